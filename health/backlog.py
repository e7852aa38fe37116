"""What is waiting to be converted right now: the /health page's "backlog" numbers.

The hourly stats count what happened; they cannot show what has not happened yet. Incoming
batches stay in the incoming store until they are converted (then they are deleted), and
records whose Histograms.json revision cannot be fetched yet wait there under `parked/`, so
one listing of the incoming store tells both, and the work queue tells how many batches are
dead-lettered. Records are counted by reading the batches, up to READ_BUDGET bytes per page
view (a healthy pipeline has next to nothing waiting; during an outage the count is a lower
bound, marked as such). Each number is None (with a one-line problem) when its store or queue
cannot be read: the page shows what it can.
"""

from __future__ import annotations

import dataclasses
import itertools

from pipeline.config import Settings
from pipeline.errors import ObjectNotFound, PipelineError
from pipeline.layout import PARKED_PREFIX, UNVALIDATED_PREFIX
from pipeline.queues import open_work_queue
from pipeline.records import scan
from pipeline.stores import open_store

LIST_LIMIT = 10_000  # objects listed at most per page view; more is shown as "at least"
READ_BUDGET = 32 * 1024 * 1024  # bytes of batches read to count their records, per page view


@dataclasses.dataclass
class Backlog:
    pending_batches: int | None = None
    pending_bytes: int = 0
    pending_records: int | None = None
    parked_batches: int | None = None
    parked_bytes: int = 0
    parked_records: int | None = None
    dead_letters: int | None = None
    truncated: bool = False  # the listing stopped at LIST_LIMIT objects
    records_partial: bool = False  # some batches were not read (READ_BUDGET): counts are minimums
    problems: list[str] = dataclasses.field(default_factory=list)


def _count_records(store, infos, budget: list[int]) -> tuple[int, bool]:
    """Records in the batches `infos`, reading while `budget[0]` bytes remain; (count, complete)."""
    records, complete = 0, True
    for info in infos:
        if info.size > budget[0]:
            complete = False
            continue
        budget[0] -= info.size
        try:
            data = store.get(info.key)
        except ObjectNotFound:  # converted (and deleted) since the listing
            continue
        records += scan(data, info.key).records
    return records, complete


def read_backlog(
    settings: Settings, limit: int = LIST_LIMIT, read_budget: int = READ_BUDGET
) -> Backlog:
    backlog = Backlog()
    try:
        incoming = open_store(
            settings.incoming_url,
            setting="TELEMETRY_INCOMING_URL",
            endpoint_url=settings.s3_endpoint_url,
        )
        listed = list(itertools.islice(incoming.list(""), limit + 1))
    except PipelineError as exc:
        backlog.problems.append(f"cannot list TELEMETRY_INCOMING_URL: {exc}")
    else:
        backlog.truncated = len(listed) > limit
        listed = [info for info in listed[:limit] if not info.key.startswith(UNVALIDATED_PREFIX)]
        parked = [info for info in listed if info.key.startswith(PARKED_PREFIX)]
        pending = [info for info in listed if not info.key.startswith(PARKED_PREFIX)]
        backlog.parked_batches, backlog.parked_bytes = len(parked), sum(i.size for i in parked)
        backlog.pending_batches, backlog.pending_bytes = len(pending), sum(i.size for i in pending)
        budget = [read_budget]
        try:
            backlog.parked_records, parked_all = _count_records(incoming, parked, budget)
            backlog.pending_records, pending_all = _count_records(incoming, pending, budget)
        except PipelineError as exc:  # a batch converted (deleted) meanwhile, or damaged
            backlog.problems.append(f"cannot count the waiting records: {exc}")
        else:
            backlog.records_partial = not (parked_all and pending_all) or backlog.truncated
    try:
        queue = open_work_queue(settings)
        try:
            backlog.dead_letters = queue.dead_letter_count()
        finally:
            queue.close()
    except PipelineError as exc:
        backlog.problems.append(f"cannot read TELEMETRY_QUEUE_URL: {exc}")
    return backlog
