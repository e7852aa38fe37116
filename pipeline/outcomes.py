"""Outcome and reason codes: what happened to a record, defined once for every part.

Convert decides each record's outcome and files refused records under `errors/<reason>/`;
ingest and convert count outcomes per hour in the stats table (`pipeline.stats`) under a
source; the health watcher, the simulator and the dashboard read those counts back. They all
import the codes from here, the plumbing package, because the readers may not import convert
(docs/architecture.md); docs/formats.md lists the codes and what each one means.
"""

from __future__ import annotations

# Sources of the hourly stats: who counted.
SOURCE_INGEST = "ingest"  # accepted submissions
SOURCE_CONVERT = "convert"  # the fate of each record: published, parked or a reason code
SOURCE_CONVERT_HIST = "convert_hist"  # histogram-level facts about published records
SOURCE_CONVERT_REPLAY = "convert_replay"  # records replayed from errors/ (python -m convert replay)

# Outcomes that are not refusals.
ACCEPTED = "accepted"  # ingest stored the submission
PUBLISHED = "published"
PARKED = "parked"  # waiting for its Histograms.json: neither converted nor refused (yet)
REVALIDATED = "revalidated"  # (convert_hist) published unvalidated, validated after all
UNVALIDATED = "unvalidated"  # (convert_hist) prefix: `unvalidated_<reason>`

# Reason codes: each names an error partition `errors/<code>/`.
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


def unvalidated_outcome(reason: str) -> str:
    """The convert_hist outcome of a record published unvalidated because of `reason`."""
    return f"{UNVALIDATED}_{reason}"


def unvalidated_reason(outcome: str) -> str | None:
    """The reason of an `unvalidated_<reason>` outcome; None for any other outcome."""
    prefix = UNVALIDATED + "_"
    return outcome.removeprefix(prefix) if outcome.startswith(prefix) else None
