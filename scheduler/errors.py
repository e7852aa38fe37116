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


class OutputMissing(SchedulerError):
    """The output directory does not exist (the command wrote nothing there)."""


class Refused(SchedulerError):
    """An output file carries raw data, or cannot be checked; str() says which rule, where."""

    def __init__(self, rule: str, where: str, detail: str = "") -> None:
        self.rule, self.where, self.detail = rule, where, detail
        super().__init__(
            f"{detail} [rule {rule}, {where}]" if detail else f"[rule {rule}, {where}]"
        )
