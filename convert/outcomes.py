"""What can happen to one record: reason codes and the outcome of processing it."""

from __future__ import annotations

import dataclasses

PUBLISHED = "published"
PARKED = "parked"

CORRUPT_GZIP = "corrupt_gzip"
TOO_LARGE = "too_large"
BAD_JSON = "bad_json"
BAD_PAYLOAD = "bad_payload"
BAD_PATH = "bad_path"
MISSING_REVISION = "missing_revision"
REVISION_UNAVAILABLE = "revision_unavailable"
INVALID_HISTOGRAM = "invalid_histogram"
DUPLICATE = "duplicate"
CORRUPT_BATCH = "corrupt_batch"
BAD_MESSAGE = "bad_message"
UNKNOWN_NAMESPACE = "unknown_namespace"

REASON_CODES = (
    CORRUPT_GZIP,
    TOO_LARGE,
    BAD_JSON,
    BAD_PAYLOAD,
    BAD_PATH,
    MISSING_REVISION,
    REVISION_UNAVAILABLE,
    INVALID_HISTOGRAM,
    DUPLICATE,
    CORRUPT_BATCH,
    BAD_MESSAGE,
    UNKNOWN_NAMESPACE,
)


class RecordRejected(Exception):
    """One record cannot be published; `reason` is its error partition code."""

    def __init__(self, reason: str, details: str) -> None:
        self.reason = reason
        self.details = details
        super().__init__(f"{reason}: {details}")


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
