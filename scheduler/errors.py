"""Errors the scheduler raises on purpose, each with a message a person can act on."""

from __future__ import annotations

from pipeline.errors import PipelineError


class SchedulerError(PipelineError):
    """Base class for scheduler errors."""


class JobValidationError(SchedulerError):
    """One or more job fields are invalid; `errors` maps field name -> message (for forms)."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        detail = "; ".join(f"{field}: {message}" for field, message in sorted(self.errors.items()))
        super().__init__(f"invalid job: {detail}")


class JobNotFound(SchedulerError, LookupError):
    """No job with that name exists."""


class TarballError(SchedulerError):
    """A code tarball is unsafe, corrupt or too large; the message says which member and why."""


class RunnerError(SchedulerError):
    """A runner could not start or follow a run (configuration, cloud API)."""
