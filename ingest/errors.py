"""Errors ingest raises on purpose, under the project's root `PipelineError`.

(The spool's `SpoolFull`/`SpoolLocked` and the request-body signals in `ingest.app` are still
defined beside their code; see tests/repo/test_errors.py.)
"""

from __future__ import annotations

from pipeline.errors import PipelineError


class IngestError(PipelineError):
    """Base class for errors raised by `ingest`."""


class BadSubmissionPath(IngestError):
    """The path is under /submit/ but is not one of the accepted forms (answered with 400)."""
