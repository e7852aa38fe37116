"""Errors ingest raises on purpose, under the project's root `PipelineError`.

A refused request is answered with the status code its class names (README "Ingest: URLs and
status codes"); `reason` is the label it is counted and logged under.
"""

from __future__ import annotations

from pipeline.errors import PipelineError


class IngestError(PipelineError):
    """Base class for errors raised by `ingest`."""


class BadSubmissionPath(IngestError):
    """The path is under /submit/ but is not one of the accepted forms (answered with 400)."""


class SpoolRefusal(IngestError):
    """The spool cannot take a record now (answered with 507); `reason` says why."""

    reason = "spool"

    def __init__(self, message: str, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(message)


class SpoolFull(SpoolRefusal):
    """The spool is at its cap (`spool_cap`) or its disk below the free floor (`disk_free`)."""


class SpoolClosed(SpoolRefusal):
    """The spool is shutting down and takes no more records."""

    reason = "closed"


class SpoolWriteFailed(SpoolRefusal):
    """Writing (or syncing) a group of records failed; none of the group was kept."""

    reason = "write_error"


class SpoolLocked(IngestError):
    """Another process already uses this spool directory."""
