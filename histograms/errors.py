"""Errors the histograms package raises on purpose, under the project's root `PipelineError`."""

from __future__ import annotations

from pipeline.errors import PipelineError


class HistogramsError(PipelineError):
    """Base class for errors raised by `histograms`."""


class DefinitionError(HistogramsError, ValueError):
    """The Histograms.json as a whole cannot be used (not JSON, or not an object of objects)."""


class ExpressionError(HistogramsError, ValueError):
    """A numeric field is neither an integer nor integer arithmetic over known constants."""


class JSONDecodeError(HistogramsError, ValueError):
    """The bytes are not one valid JSON document."""


class RevisionError(HistogramsError):
    """Histogram definitions for a revision could not be obtained."""

    def __init__(self, revision_url: str, problem: str) -> None:
        self.revision_url = revision_url
        self.problem = problem
        super().__init__(f"{revision_url}: {problem}")


class UnknownRevision(RevisionError):
    """Permanent: the revision URL is malformed or the server does not know the revision."""


class RevisionUnavailable(RevisionError):
    """Temporary: the server could not be reached or failed; try the record again later."""
