"""Errors the aggregates package raises on purpose, under the project's root `PipelineError`."""

from __future__ import annotations

from pipeline.errors import PipelineError


class AggregatesError(PipelineError):
    """Base class for errors raised by `aggregates`."""


class QueryError(AggregatesError, ValueError):
    """A query names something malformed (the API answers 400 with this message)."""
