"""Create and update jobs from what a user submitted; shared by the HTML pages and the JSON API.

The fields are checked by the scheduler (`scheduler.job_spec`, and `scheduler.jobs` for whether
a name is free), the same checks `python -m scheduler add` makes; this adds the upload's own
checks and the rule that an owner changes only OWNER_FIELDS. Every problem is reported at once,
keyed by its field (`tarball` for the upload), before anything is stored; a stored tarball is
removed again when the job record is refused, so a rejected submission changes nothing.

A new job's runner is the operator's `TELEMETRY_RUNNER` (Settings.runner), never a field the
user sends; editing a job keeps the runner it was created with.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from dashboard.errors import UploadRejected
from dashboard.tarballs import check_tarball
from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.stores import open_store
from scheduler import jobs as job_store
from scheduler.errors import JobValidationError, TarballError
from scheduler.job_spec import OWNER_FIELDS, TARBALL_REQUIRED
from scheduler.models import Job

log = logging.getLogger(__name__)


def _upload_problem(tarball: tuple[str, bytes] | None, max_bytes: int) -> str | None:
    if tarball is None:
        return TARBALL_REQUIRED
    try:
        check_tarball(*tarball, max_bytes)
    except UploadRejected as exc:
        return str(exc)
    return None


def _store(settings: Settings, name: str, data: bytes) -> str:
    try:
        return job_store.store_tarball(settings, name, data)
    except TarballError as exc:  # the scheduler's own checks, after ours passed
        raise JobValidationError({"tarball": str(exc)}) from exc


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
    name: Any,
    data: Mapping[str, Any],
    tarball: tuple[str, bytes] | None,
    max_bytes: int,
) -> Job:
    """Create a job from the owner's fields in `data` (others are ignored) and the upload."""
    fields = {
        **{k: data[k] for k in OWNER_FIELDS if k in data},
        "name": name,
        "owner": owner,
        # Where runs execute is the operator's choice (TELEMETRY_RUNNER), not a form field.
        "runner": settings.runner,
    }
    errors: dict[str, str] = {}
    try:
        job_store.check_new_job(session, fields)
    except JobValidationError as exc:
        errors.update(exc.errors)
    problem = _upload_problem(tarball, max_bytes)
    if problem:
        errors["tarball"] = problem
    if errors:
        raise JobValidationError(errors)
    key = _store(settings, name, tarball[1])
    try:
        job = job_store.create_job(session, tarball_key=key, **fields)
    except JobValidationError:
        session.rollback()
        _discard(settings, key)
        raise
    log.info("job %s created by %s", name, owner)
    return job


def update(
    session: Session,
    settings: Settings,
    job: Job,
    *,
    changes: Mapping[str, Any],
    tarball: tuple[str, bytes] | None,
    max_bytes: int,
) -> Job:
    """Change a job's OWNER_FIELDS (any other is refused); a new tarball replaces the old
    one, none keeps it."""
    errors: dict[str, str] = {}
    try:
        job_store.check_job_update(session, job, changes, editable=OWNER_FIELDS)
    except JobValidationError as exc:
        errors.update(exc.errors)
    problem = _upload_problem(tarball, max_bytes) if tarball is not None else None
    if problem:
        errors["tarball"] = problem
    if errors:
        raise JobValidationError(errors)
    fields = dict(changes)
    old_key = job.tarball_key
    new_key = None
    if tarball is not None:
        new_key = fields["tarball_key"] = _store(settings, job.name, tarball[1])
    try:
        job = job_store.update_job(session, job, **fields)
    except JobValidationError:
        session.rollback()
        if new_key and new_key != old_key:
            _discard(settings, new_key)
        raise
    log.info("job %s updated%s", job.name, " with a new tarball" if new_key else "")
    return job
