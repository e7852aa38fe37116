"""What can happen to one record: its outcome, and the refusal that names a reason code.

The codes themselves are defined in `pipeline.outcomes` and re-exported here.
"""

from __future__ import annotations

import dataclasses

from convert.errors import RecordRejected

# The codes are defined once, in the plumbing package (the health watcher and the dashboard
# read them too); convert's modules use them through this module.
from pipeline.outcomes import (
    BAD_JSON,
    BAD_MESSAGE,
    BAD_PATH,
    BAD_PAYLOAD,
    CORRUPT_BATCH,
    CORRUPT_GZIP,
    DUPLICATE,
    INVALID_HISTOGRAM,
    MISSING_REVISION,
    PARKED,
    PUBLISHED,
    REASON_CODES,
    REVISION_UNAVAILABLE,
    TOO_LARGE,
    UNKNOWN_NAMESPACE,
)

__all__ = [
    "BAD_JSON",
    "BAD_MESSAGE",
    "BAD_PATH",
    "BAD_PAYLOAD",
    "CORRUPT_BATCH",
    "CORRUPT_GZIP",
    "DUPLICATE",
    "INVALID_HISTOGRAM",
    "MISSING_REVISION",
    "PARKED",
    "PUBLISHED",
    "REASON_CODES",
    "REVISION_UNAVAILABLE",
    "TOO_LARGE",
    "UNKNOWN_NAMESPACE",
    "Outcome",
    "RecordRejected",
]


@dataclasses.dataclass(slots=True)
class Outcome:
    """The fate of one record; `kind` is `published`, `parked` or an error reason code."""

    kind: str
    doc_id: str
    channel: str
    doc_type: str
    date: str
    partition: str = ""  # published key without the object id applied (see batch.py)
    line: bytes = b""
    details: str = ""
    lost_histograms: bool = False
    reason: str = ""  # why a record was parked or published unvalidated (logs and stats)
    unvalidated: bool = False  # published with the payload's own histogram declarations
    revalidate: bool = False  # ... and worth validating again later (revision may come back)
