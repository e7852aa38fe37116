"""Re-announce incoming batches that no work-queue message names any more.

Ingest stores a batch in the incoming store and then announces it on the work queue; convert
deletes the batch once every output is stored. A batch therefore waits in the incoming store
only while some message names it: waiting, delayed (a parked batch's retry), held by a worker
or dead-lettered. When the queue loses messages (a Redis restarted without its data, an SQS
queue purged or re-created, messages older than SQS's retention period), their batches stay
in the incoming store for good: `convert --drain` sees an empty queue and exits 0, and
nothing is ever converted. The reconciler finds such batches and sends a new message for
each. A message too many is harmless: converting a batch is idempotent (same output keys,
same lines, stats counted once per batch), and a message for a batch already done finds it
gone and is acknowledged.

What "named by a message" can be known depends on the queue backend:

- SQLite and Redis list every message body (`WorkQueue.message_bodies`): a batch older than
  the lease plus TELEMETRY_RECONCILE_MARGIN_SECONDS that no body names is stranded. The age
  keeps a batch that ingest has stored but not yet announced (or is still retrying to
  announce) from being taken for one.
- SQS cannot list messages without claiming them. What it can say is how long a message lives
  at most (`retention_seconds`): a batch older than that plus the margin cannot be named by
  any message. Anything younger is assumed covered (SQS does not otherwise lose messages).

A re-announced batch loses what its lost message said besides the key (a parked batch's
parking count starts again). The health watcher (`python -m health`) runs a pass every
TELEMETRY_RECONCILE_INTERVAL_SECONDS; `python -m pipeline reconcile` runs one by hand. Several
reconcilers at once only send duplicate messages.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from pipeline.queues.base import WorkQueue
from pipeline.stores.base import BlobStore, ObjectInfo

if TYPE_CHECKING:
    from pipeline.config import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ReconcileReport:
    """What one pass found: incoming objects, stranded ones, and whether it could tell."""

    objects: int = 0
    stranded: list[ObjectInfo] = dataclasses.field(default_factory=list)
    sent: int = 0
    min_age: float = 0.0
    how: str = ""  # how coverage was judged, for the log line

    def line(self) -> str:
        oldest = ""
        if self.stranded:
            first = min(self.stranded, key=lambda info: info.modified)
            oldest = f"; oldest {first.key}"
        return (
            f"reconcile: {self.objects} incoming object(s), {len(self.stranded)} stranded "
            f"(older than {self.min_age:.0f}s, {self.how}), {self.sent} re-announced{oldest}"
        )


def keys_named(bodies: Iterable[str]) -> set[str]:
    """The batch keys that message bodies name (`{"key": ...}`); other bodies name none."""
    keys: set[str] = set()
    for body in bodies:
        try:
            parsed = json.loads(body)
        except ValueError:
            continue
        if isinstance(parsed, dict) and isinstance(parsed.get("key"), str):
            keys.add(parsed["key"])
    return keys


def find_stranded(
    objects: Iterable[ObjectInfo],
    named: set[str] | None,
    now: float,
    min_age: float,
    announced: Mapping[str, float] | None = None,
) -> list[ObjectInfo]:
    """The objects older than `min_age` seconds at `now` that no message names.

    `named` is None when the queue cannot list its messages: then age alone decides (the
    caller passes a `min_age` past which no message can exist). `announced` maps keys this
    reconciler already re-announced to when; those are left alone for `min_age`, so a queue
    that cannot list does not get a new duplicate on every pass. An object whose store gave
    no time (modified 0) counts as old.
    """
    announced = announced or {}
    stranded = []
    for info in objects:
        if now - info.modified < min_age:
            continue
        if named is not None and info.key in named:
            continue
        if now - announced.get(info.key, float("-inf")) < min_age:
            continue
        stranded.append(info)
    return stranded


class Reconciler:
    """Reconcile one incoming store with one work queue, pass after pass."""

    def __init__(self, incoming: BlobStore, queue: WorkQueue, margin_seconds: float) -> None:
        self.incoming = incoming
        self.queue = queue
        self.margin = margin_seconds
        self.announced: dict[str, float] = {}

    @classmethod
    def open(cls, settings: Settings) -> Reconciler:
        """The reconciler of the configured incoming store and work queue (`close` it)."""
        from pipeline.queues import open_work_queue
        from pipeline.stores import open_store

        incoming = open_store(
            settings.incoming_url,
            setting="TELEMETRY_INCOMING_URL",
            endpoint_url=settings.s3_endpoint_url,
        )
        try:
            queue = open_work_queue(settings)
        except BaseException:
            incoming.close()
            raise
        return cls(incoming, queue, settings.reconcile_margin_seconds)

    def close(self) -> None:
        self.queue.close()
        self.incoming.close()

    def run_once(
        self, now: float | None = None, dry_run: bool = False, older_than: float | None = None
    ) -> ReconcileReport:
        """One pass: list the store, then the queue (in that order, so a batch converted in
        between is at worst re-announced, never missed), and announce what is stranded.

        `older_than` replaces the age a batch must reach (the lease plus the margin, or the
        retention plus the margin); on a queue that cannot list its messages it is the only
        test, e.g. `0` after purging an SQS queue re-announces every batch waiting.
        """
        objects = list(self.incoming.list(""))
        bodies = self.queue.message_bodies()
        now = time.time() if now is None else now
        report = ReconcileReport(objects=len(objects))
        if bodies is not None:
            named: set[str] | None = keys_named(bodies)
            report.min_age = self.queue.lease_seconds + self.margin
            report.how = f"named by none of {len(bodies)} queued message(s)"
        elif older_than is not None:
            named = None
            report.how = "the queue cannot list its messages: age alone"
        else:
            named = None
            retention = self.queue.retention_seconds()
            if retention is None:
                report.how = "the queue cannot list its messages nor bound their age: skipped"
                log.warning("%s", report.line())
                return report
            report.min_age = max(self.queue.lease_seconds, retention) + self.margin
            report.how = f"past the queue's message retention of {retention:.0f}s"
        if older_than is not None:
            report.min_age = older_than
        report.stranded = find_stranded(objects, named, now, report.min_age, self.announced)
        if not dry_run:
            for info in report.stranded:
                body = {"key": info.key, "bytes": info.size, "reannounced": True}
                self.queue.send(json.dumps(body))
                self.announced[info.key] = now
                report.sent += 1
                log.warning(
                    "reconcile: batch %s (%d bytes) waited %.0fs with no queue message "
                    "naming it; announced it again",
                    info.key,
                    info.size,
                    now - info.modified,
                )
        present = {info.key for info in objects}
        self.announced = {k: t for k, t in self.announced.items() if k in present}
        (log.warning if report.stranded else log.info)("%s", report.line())
        return report
