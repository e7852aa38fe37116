"""Errors the convert workers raise on purpose, under the project's root `PipelineError`."""

from __future__ import annotations

from pipeline.errors import PipelineError


class ConvertError(PipelineError):
    """Base class for errors raised by `convert`."""


class RecordRejected(ConvertError):
    """One record cannot be published; `reason` is its error partition code."""

    def __init__(self, reason: str, details: str) -> None:
        self.reason = reason
        self.details = details
        super().__init__(f"{reason}: {details}")
