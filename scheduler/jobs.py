"""Job and run records for callers (dashboard, CLI): create/update/delete with validation,
"run now", "cancel", and storing code tarballs.

Every function takes the caller's SQLAlchemy session and commits; the scheduler service
notices changes on its next sync (a few seconds) and is the only process that executes runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from typing import Any

from sqlalchemy import column, select, table, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from pipeline.config import Settings
from pipeline.stores import open_store
from scheduler.clock import Clock, naive_utc
from scheduler.config import SchedulerConfig, load_scheduler_config
from scheduler.errors import JobNotFound, JobValidationError, TarballError
from scheduler.models import (
    JOB_NAME_PATTERN,
    Frequency,
    Job,
    ReservedName,
    Run,
    RunState,
    SchedulerHeartbeat,
)
from scheduler.tarball import validate_tarball

log = logging.getLogger(__name__)

RUNNERS = ("local", "ec2")
# What a job's owner sets through the dashboard's form and its API (the one list of them).
OWNER_FIELDS = (
    "command",
    "output_dir",
    "frequency",
    "day_of_week",
    "day_of_month",
    "hour",
    "timeout_minutes",
    "enabled",
    "end_date",
)
# Every field `update_job` accepts: the owner's, and those the service or the operator sets.
EDITABLE_FIELDS = ("name", "owner", "tarball_key", *OWNER_FIELDS, "runner")
MAX_TIMEOUT_MINUTES = 24 * 60
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def validate_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise job fields; raise JobValidationError naming every bad field."""
    errors: dict[str, str] = {}
    clean: dict[str, Any] = dict(fields)

    name = fields.get("name")
    if not isinstance(name, str) or not re.match(JOB_NAME_PATTERN, name):
        errors["name"] = "use 1-100 letters, digits, '_' or '-'"
    owner = fields.get("owner")
    if not isinstance(owner, str) or not _EMAIL.match(owner.strip()):
        errors["owner"] = "must be an email address (failure notices go there)"
    else:
        clean["owner"] = owner.strip()
    if not isinstance(fields.get("tarball_key"), str) or not fields["tarball_key"].strip():
        errors["tarball_key"] = "upload a code tarball (.tar.gz)"
    command = fields.get("command")
    if not isinstance(command, str) or not command.strip():
        errors["command"] = "give the command line to run (bash)"
    elif "\x00" in command:
        errors["command"] = "must not contain NUL characters"
    output_dir = fields.get("output_dir")
    if not isinstance(output_dir, str) or not output_dir.strip():
        errors["output_dir"] = "give the output directory, relative to the job's directory"
    else:
        parts = output_dir.strip().strip("/").split("/") if not output_dir.startswith("/") else None
        if output_dir.startswith("/") or output_dir.startswith("~"):
            errors["output_dir"] = "must be relative to the job's directory, not absolute"
        elif parts is not None and any(p == ".." for p in parts):
            errors["output_dir"] = "must not contain '..'"
        else:
            clean["output_dir"] = output_dir.strip().strip("/") or "."

    frequency = fields.get("frequency")
    if isinstance(frequency, Frequency):
        frequency = frequency.value
    if frequency not in {f.value for f in Frequency}:
        errors["frequency"] = "choose daily, weekly or monthly"
    clean["frequency"] = frequency

    hour = _as_int(fields.get("hour"))
    if hour is None or not 0 <= hour <= 23:
        errors["hour"] = "hour of day (UTC) must be 0-23"
    clean["hour"] = hour

    dow = fields.get("day_of_week")
    dom = fields.get("day_of_month")
    if frequency == "weekly":
        dow_int = _as_int(dow)
        if dow_int is None or not 0 <= dow_int <= 6:
            errors["day_of_week"] = "weekly jobs need a day of week 0-6 (0 = Monday)"
        clean["day_of_week"], clean["day_of_month"] = dow_int, None
    elif frequency == "monthly":
        dom_int = _as_int(dom)
        if dom_int is None or not 1 <= dom_int <= 31:
            errors["day_of_month"] = (
                "monthly jobs need a day of month 1-31 (29-31 move to the month's last day when shorter)"
            )
        clean["day_of_month"], clean["day_of_week"] = dom_int, None
    else:
        clean["day_of_week"] = clean["day_of_month"] = None

    timeout = _as_int(fields.get("timeout_minutes"))
    if timeout is None or not 1 <= timeout <= MAX_TIMEOUT_MINUTES:
        errors["timeout_minutes"] = f"timeout must be 1-{MAX_TIMEOUT_MINUTES} minutes"
    clean["timeout_minutes"] = timeout

    if not isinstance(fields.get("enabled", True), bool):
        errors["enabled"] = "must be true or false"
    end_date = fields.get("end_date")
    if end_date is not None:
        if isinstance(end_date, dt.date) and not isinstance(end_date, dt.datetime):
            end_date = dt.datetime.combine(end_date, dt.time(23, 59, 59))
        if not isinstance(end_date, dt.datetime):
            errors["end_date"] = "must be a date"
        else:
            clean["end_date"] = naive_utc(end_date)
    runner = fields.get("runner", "local")
    if runner not in RUNNERS:
        errors["runner"] = f"choose one of {', '.join(RUNNERS)}"
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
    day_of_week: int | None = None,
    day_of_month: int | None = None,
    hour: int = 12,
    timeout_minutes: int = 60,
    enabled: bool = True,
    end_date: dt.datetime | None = None,
    runner: str = "local",
) -> Job:
    """Validate and insert a job; a duplicate name is a JobValidationError on `name`."""
    fields = validate_fields(
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
        )
    )
    if session.scalar(select(Job.id).where(Job.name == fields["name"])) is not None:
        raise JobValidationError({"name": f"a job named {name!r} already exists"})
    _claim_name(session, fields["name"], fields["owner"])
    job = Job(**fields)
    session.add(job)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise JobValidationError({"name": f"a job named {name!r} already exists"}) from exc
    log.info("job %s (id %s) created by %s", job.name, job.id, job.owner)
    return job


def update_job(session: Session, job: Job, **fields: Any) -> Job:
    """Change some fields; the whole result is validated as if it were new."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise JobValidationError({name: "not an editable job field" for name in unknown})
    merged = {name: getattr(job, name) for name in EDITABLE_FIELDS}
    merged.update(fields)
    clean = validate_fields(merged)
    if (
        clean["name"] != job.name
        and session.scalar(select(Job.id).where(Job.name == clean["name"])) is not None
    ):
        raise JobValidationError({"name": f"a job named {clean['name']!r} already exists"})
    if clean["name"] != job.name:
        _claim_name(session, clean["name"], job.owner)
        _reserve_name(session, job.name, job.owner)
    for name in EDITABLE_FIELDS:
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
    """Refuse a name reserved to someone else; the owner's own reservation is used up."""
    reserved = session.get(ReservedName, name)
    if reserved is None:
        return
    if reserved.owner != owner:
        raise JobValidationError(
            {
                "name": f"the name {name!r} belonged to another user's deleted job, whose "
                "published output is still served under it; an admin can release it"
            }
        )
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


def cancel_run(session: Session, run: Run) -> Run:
    """Ask for a run to stop: a run not started yet is cancelled at once; a running one is
    killed by the service within a second or two."""
    if RunState(run.state).finished:
        return run
    session.execute(update(Run).where(Run.id == run.id).values(cancel_requested=True))
    session.execute(
        update(Run)
        .where(Run.id == run.id, Run.state == RunState.scheduled.value)
        .values(
            state=RunState.cancelled.value,
            reason="cancelled before it started",
            finished_at=naive_utc(Clock().now()),
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


def service_alive(session: Session, within_seconds: float = 15.0) -> bool:
    """True when some scheduler service has beaten its heartbeat recently."""
    cutoff = naive_utc(Clock().now()) - dt.timedelta(seconds=within_seconds)
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
