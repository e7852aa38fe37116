"""Create and update jobs from validated form data; shared by the HTML pages and the JSON API.

Every check that can fail runs before anything is stored, and a stored tarball is removed
again when the job record is refused, so a rejected submission changes nothing.

A new job's runner is the operator's `TELEMETRY_RUNNER` (Settings.runner), never a field the
user sends; editing a job keeps the runner it was created with.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.errors import JobFieldErrors, UploadRejected
from dashboard.forms import NAME_RULE_MESSAGE
from dashboard.tarballs import check_tarball
from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.stores import open_store
from scheduler import jobs as job_store
from scheduler.errors import JobValidationError, TarballError
from scheduler.models import JOB_NAME_PATTERN, Job

log = logging.getLogger(__name__)

RESERVED_NAMES = {"new"}  # /jobs/new is the form


def name_problem(
    session: Session, name: str, current: Job | None = None, owner: str | None = None
) -> str | None:
    """Why `name` cannot be used for a new job of `owner`, or None (the live check asks the
    same)."""
    if not name:
        return "Enter a job name."
    if name in RESERVED_NAMES:
        return f"{name!r} is reserved; choose another name."
    if not re.match(JOB_NAME_PATTERN, name):
        return NAME_RULE_MESSAGE
    existing = session.scalar(select(Job).where(Job.name == name))
    if existing is not None and existing is not current:
        return f"A job named {name!r} already exists; choose another name."
    reserved = job_store.reserved_name_owner(session, name)
    if reserved is not None and reserved != owner:
        return (
            f"{name!r} belonged to another user's deleted job, whose published output is "
            "still served under it; choose another name (an admin can release it)."
        )
    return None


def _fields_from(data: Mapping[str, Any]) -> dict[str, Any]:
    fields = {k: data[k] for k in job_store.OWNER_FIELDS if k in data}
    if fields.get("frequency") != "weekly":
        fields["day_of_week"] = None
    if fields.get("frequency") != "monthly":
        fields["day_of_month"] = None
    end = fields.get("end_date")
    if isinstance(end, dt.date) and not isinstance(end, dt.datetime):
        fields["end_date"] = dt.datetime.combine(end, dt.time(23, 59, 59))
    return fields


def _validation_errors(exc: JobValidationError) -> dict[str, str]:
    return dict(exc.errors) or {"__all__": str(exc)}


def _store(settings: Settings, name: str, tarball: tuple[str, bytes], max_bytes: int) -> str:
    filename, data = tarball
    try:
        check_tarball(filename, data, max_bytes)
        return job_store.store_tarball(settings, name, data)
    except (UploadRejected, TarballError) as exc:  # ours first, then the scheduler's own checks
        raise JobFieldErrors({"tarball": str(exc)}) from exc


def _discard(settings: Settings, key: str) -> None:
    try:
        open_store(
            settings.code_url, setting="TELEMETRY_CODE_URL", endpoint_url=settings.s3_endpoint_url
        ).delete(key)
    except PipelineError:
        log.warning("could not remove the refused tarball %s", key)


def create(
    session: Session,
    settings: Settings,
    *,
    owner: str,
    name: str,
    data: Mapping[str, Any],
    tarball: tuple[str, bytes] | None,
    max_bytes: int,
) -> Job:
    problem = name_problem(session, name, owner=owner)
    if problem:
        raise JobFieldErrors({"name": problem})
    if tarball is None:
        raise JobFieldErrors({"tarball": "Upload the code tarball (.tar.gz or .tgz)."})
    key = _store(settings, name, tarball, max_bytes)
    try:
        job = job_store.create_job(
            session,
            name=name,
            owner=owner,
            tarball_key=key,
            # Where runs execute is the operator's choice (TELEMETRY_RUNNER), not a form field.
            runner=settings.runner,
            **_fields_from(data),
        )
    except JobValidationError as exc:
        session.rollback()
        _discard(settings, key)
        raise JobFieldErrors(_validation_errors(exc)) from exc
    log.info("job %s created by %s", name, owner)
    return job


def update(
    session: Session,
    settings: Settings,
    job: Job,
    *,
    data: Mapping[str, Any],
    tarball: tuple[str, bytes] | None,
    max_bytes: int,
) -> Job:
    """Change a job's fields; a new tarball replaces the old one, none keeps it."""
    fields = _fields_from(data)
    old_key = job.tarball_key
    new_key = None
    if tarball is not None:
        new_key = _store(settings, job.name, tarball, max_bytes)
        fields["tarball_key"] = new_key
    try:
        job = job_store.update_job(session, job, **fields)
    except JobValidationError as exc:
        session.rollback()
        if new_key and new_key != old_key:
            _discard(settings, new_key)
        raise JobFieldErrors(_validation_errors(exc)) from exc
    log.info("job %s updated%s", job.name, " with a new tarball" if new_key else "")
    return job
