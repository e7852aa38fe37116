"""scheduler service of telemetry-pipeline: runs code tarballs on a schedule and publishes
their output (see scheduler.service for the policies, scheduler.jobs for the public API).

The dashboard calls these (all take its SQLAlchemy session):
  create_job, update_job, delete_job, get_job, job_history, request_run_now, cancel_run,
  service_alive, store_tarball, next_run_time, reserved_name_owner, release_job_name; errors JobValidationError (`.errors` is a
  field -> message dict for forms), JobNotFound, TarballError. What a job may be (its rules,
  their messages, the owner's fields) is `scheduler.job_spec`.
"""

from scheduler.errors import JobNotFound, JobValidationError, TarballError
from scheduler.jobs import (
    cancel_run,
    create_job,
    delete_job,
    get_job,
    job_history,
    release_job_name,
    request_run_now,
    reserved_name_owner,
    service_alive,
    store_tarball,
    update_job,
)
from scheduler.triggers import next_run_time

__all__ = [
    "JobNotFound",
    "JobValidationError",
    "TarballError",
    "cancel_run",
    "create_job",
    "delete_job",
    "get_job",
    "job_history",
    "next_run_time",
    "release_job_name",
    "request_run_now",
    "reserved_name_owner",
    "service_alive",
    "store_tarball",
    "update_job",
]
