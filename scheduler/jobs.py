"""Job and run records for callers (dashboard, CLI): create/update/delete (validated by
`scheduler.job_spec`, plus whether a name is free), "run now", "cancel", and storing code
tarballs.

Every function takes the caller's SQLAlchemy session and commits; the scheduler service
notices changes on its next sync (a few seconds) and is the only process that executes runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import column, select, table, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from pipeline.config import Settings
from pipeline.stores import open_store
from scheduler import job_spec
from scheduler.clock import Clock, naive_utc
from scheduler.config import SchedulerConfig, load_scheduler_config
from scheduler.errors import JobNotFound, JobValidationError, TarballError
from scheduler.job_spec import JOB_FIELDS
from scheduler.models import (
    JOB_NAME_PATTERN,
    Job,
    ReservedName,
    Run,
    RunState,
    SchedulerHeartbeat,
)
from scheduler.tarball import validate_tarball

log = logging.getLogger(__name__)


def name_problem(
    session: Session, name: Any, owner: str | None = None, current: Job | None = None
) -> str | None:
    """Why `name` cannot be used by `owner` (for `current`, when renaming), or None: the rule
    of job_spec, then whether another job has it or a deleted job's name is reserved to
    someone else. The dashboard's live check asks the same."""
    problem = job_spec.name_problem(name)
    if problem:
        return problem
    existing = session.scalar(select(Job).where(Job.name == name))
    if existing is not None and existing is not current:
        return job_spec.name_taken(name)
    reserved = reserved_name_owner(session, name)
    if reserved is not None and reserved != owner:
        return job_spec.name_reserved_to_another(name)
    return None


def check_new_job(session: Session, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a new job's fields, its name's freedom included; JobValidationError naming
    every problem at once. Callers run it before storing the code, `create_job` again."""
    clean, errors = job_spec.check(fields)
    if "name" not in errors:
        problem = name_problem(session, clean["name"], clean.get("owner"))
        if problem:
            errors["name"] = problem
    if errors:
        raise JobValidationError(errors)
    return clean


def check_job_update(
    session: Session, job: Job, changes: Mapping[str, Any], editable: tuple[str, ...] = JOB_FIELDS
) -> dict[str, Any]:
    """Validate `job` with `changes` applied (only `editable` fields may change); returns every
    field's clean value or raises JobValidationError naming every problem."""
    errors = {name: job_spec.NOT_EDITABLE for name in sorted(set(changes) - set(editable))}
    merged = {name: getattr(job, name) for name in JOB_FIELDS}
    merged.update((k, v) for k, v in changes.items() if k in JOB_FIELDS)
    clean, problems = job_spec.check(merged)
    errors.update(problems)
    if "name" not in errors and clean["name"] != job.name:
        problem = name_problem(session, clean["name"], job.owner, current=job)
        if problem:
            errors["name"] = problem
    if errors:
        raise JobValidationError(errors)
    return clean


def create_job(
    session: Session,
    *,
    name: str,
    owner: str,
    tarball_key: str,
    command: str,
    output_dir: str,
    frequency: str,
    day_of_week: int | str | None = None,
    day_of_month: int | str | None = None,
    hour: int | str = 12,
    timeout_minutes: int | str = 60,
    enabled: bool = True,
    end_date: dt.date | str | None = None,
    runner: str = "local",
) -> Job:
    """Validate (see job_spec; values may be text) and insert a job; a name in use is a
    JobValidationError on `name`."""
    fields = check_new_job(
        session,
        dict(
            name=name,
            owner=owner,
            tarball_key=tarball_key,
            command=command,
            output_dir=output_dir,
            frequency=frequency,
            day_of_week=day_of_week,
            day_of_month=day_of_month,
            hour=hour,
            timeout_minutes=timeout_minutes,
            enabled=enabled,
            end_date=end_date,
            runner=runner,
        ),
    )
    _claim_name(session, fields["name"], fields["owner"])
    job = Job(**fields)
    session.add(job)
    try:
        session.commit()
    except IntegrityError as exc:  # created by someone else since check_new_job
        session.rollback()
        raise JobValidationError({"name": job_spec.name_taken(fields["name"])}) from exc
    log.info("job %s (id %s) created by %s", job.name, job.id, job.owner)
    return job


def update_job(session: Session, job: Job, **fields: Any) -> Job:
    """Change some fields (any of JOB_FIELDS); the whole result is validated as if it were new."""
    clean = check_job_update(session, job, fields)
    if clean["name"] != job.name:
        _claim_name(session, clean["name"], job.owner)
        _reserve_name(session, job.name, job.owner)
    for name in JOB_FIELDS:
        setattr(job, name, clean[name])
    if "end_date" in fields:
        job.expiry_notified_at = None
    session.commit()
    log.info("job %s (id %s) updated: %s", job.name, job.id, ", ".join(sorted(fields)))
    return job


def delete_job(session: Session, job: Job) -> None:
    """Delete a job and its run history (published output stays in the public store)."""
    log.info("job %s (id %s) deleted; its name stays reserved to %s", job.name, job.id, job.owner)
    _reserve_name(session, job.name, job.owner)
    session.delete(job)
    session.commit()


def _reserve_name(session: Session, name: str, owner: str) -> None:
    """Keep `name` (whose published output stays public) for `owner` (see ReservedName)."""
    reserved = session.get(ReservedName, name)
    if reserved is None:
        session.add(ReservedName(name=name, owner=owner))
    else:
        reserved.owner = owner


def _claim_name(session: Session, name: str, owner: str) -> None:
    """Use up the owner's own reservation of `name` (name_problem refused anyone else's)."""
    reserved = session.get(ReservedName, name)
    if reserved is not None and reserved.owner == owner:
        session.delete(reserved)


def reserved_name_owner(session: Session, name: str) -> str | None:
    """Who a deleted job's name is reserved to (None: not reserved)."""
    reserved = session.get(ReservedName, name)
    return reserved.owner if reserved is not None else None


def release_job_name(session: Session, name: str) -> bool:
    """An admin's act: let anyone use a deleted job's name again; False if it was not reserved."""
    reserved = session.get(ReservedName, name)
    if reserved is None:
        return False
    session.delete(reserved)
    session.commit()
    log.info("job name %s released (was reserved to %s)", name, reserved.owner)
    return True


def get_job(session: Session, name: str) -> Job:
    job = session.scalar(select(Job).where(Job.name == name))
    if job is None:
        raise JobNotFound(f"no job named {name!r} (see `python -m scheduler list`)")
    return job


def job_history(session: Session, job: Job, limit: int = 50) -> list[Run]:
    """Newest first."""
    query = (
        select(Run).where(Run.job_id == job.id).order_by(Run.scheduled_for.desc(), Run.id.desc())
    )
    return list(session.scalars(query.limit(limit)))


def request_run_now(session: Session, job: Job, clock: Clock | None = None) -> Run:
    """Queue a manual run for the service; it waits while another run of the job is going."""
    now = naive_utc((clock or Clock()).now())
    for attempt in range(5):
        run = Run(
            job_id=job.id,
            scheduled_for=now + dt.timedelta(microseconds=attempt),
            trigger="manual",
            state=RunState.scheduled.value,
        )
        session.add(run)
        try:
            session.commit()
        except IntegrityError:  # same instant as another firing of this job
            session.rollback()
            continue
        log.info("run %s of job %s requested manually", run.id, job.name)
        return run
    raise RuntimeError(f"could not record a manual run for job {job.name!r}")


def cancel_run(session: Session, run: Run, clock: Clock | None = None) -> Run:
    """Ask for a run to stop: a run not started yet is cancelled at once; a running one is
    killed by the service within a second or two. `clock` dates the cancellation (the
    service's own clock where there is one; real time from the CLI and the dashboard)."""
    clock = clock or Clock()
    if RunState(run.state).finished:
        return run
    session.execute(update(Run).where(Run.id == run.id).values(cancel_requested=True))
    session.execute(
        update(Run)
        .where(Run.id == run.id, Run.state == RunState.scheduled.value)
        .values(
            state=RunState.cancelled.value,
            reason="cancelled before it started",
            finished_at=naive_utc(clock.now()),
        )
    )
    session.commit()
    session.refresh(run)
    log.info("run %s cancel requested (state now %s)", run.id, run.state)
    return run


_USERS = table("dashboard_users", column("email"), column("is_admin"))


def owner_is_admin(session: Session, email: str) -> bool:
    """True when `email` is a dashboard admin (the dashboard owns that table; read by name so
    the scheduler does not import the dashboard). No table yet: nobody is."""
    try:
        value = session.execute(select(_USERS.c.is_admin).where(_USERS.c.email == email)).scalar()
    except (OperationalError, ProgrammingError):
        session.rollback()
        return False
    return bool(value)


def service_alive(
    session: Session, within_seconds: float = 15.0, clock: Clock | None = None
) -> bool:
    """True when some scheduler service has beaten its heartbeat recently (by `clock`, real
    time unless given: the heartbeat is written in wall time, see scheduler/heartbeat.py)."""
    clock = clock or Clock()
    cutoff = naive_utc(clock.now()) - dt.timedelta(seconds=within_seconds)
    return (
        session.scalar(
            select(SchedulerHeartbeat.id).where(SchedulerHeartbeat.beat_at >= cutoff).limit(1)
        )
        is not None
    )


def store_tarball(
    settings: Settings, name: str, data: bytes, config: SchedulerConfig | None = None
) -> str:
    """Check an uploaded tarball and put it in the code store; returns its key.

    Keys are content-addressed (`<name>/<sha256 prefix>.tar.gz`), so replacing a job's code
    never changes the tarball under a run that is already going.
    """
    config = config or load_scheduler_config()
    if not re.match(JOB_NAME_PATTERN, name or ""):
        raise TarballError(f"invalid job name {name!r} for a tarball")
    validate_tarball(
        data,
        max_compressed=config.tarball_max_bytes,
        max_bytes=config.extract_max_bytes,
        max_members=config.extract_max_members,
    )
    key = f"{name}/{hashlib.sha256(data).hexdigest()[:16]}.tar.gz"
    store = open_store(
        settings.code_url, setting="TELEMETRY_CODE_URL", endpoint_url=settings.s3_endpoint_url
    )
    store.put(key, data)
    log.info("tarball for job %s stored as %s (%d bytes)", name, key, len(data))
    return key
