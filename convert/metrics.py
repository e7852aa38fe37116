"""Prometheus metrics and health checks of one convert worker (served by pipeline.metrics).

Counters (records by outcome, batches, claims) are counted by this worker process as it works;
gauges that describe shared state (queue depth, dead letters, parked and stale incoming
objects) are read from the queue and the incoming store when scraped, through clients of their
own so a scrape never shares a connection with the worker loop. With `--workers N` every worker
serves its own port (TELEMETRY_METRICS_PORT + its index), as Prometheus expects of processes.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

from convert import outcomes as oc
from convert.batch import PARKED_PREFIX, BatchMessage, BatchReport
from pipeline.config import Settings
from pipeline.logs import log_context
from pipeline.metrics import CallbackCollector, MetricsServer, new_registry, serve_metrics
from pipeline.queues import Message, WorkQueue, open_work_queue
from pipeline.stores import BlobStore, open_store

if TYPE_CHECKING:
    from convert.worker import ConvertWorker

_INCOMING_TIME = re.compile(r"^(\d{8})/(\d{6})-")


def incoming_key_time(key: str) -> dt.datetime | None:
    """When ingest opened the spool file of an incoming key `YYYYMMDD/HHMMSS-...` (UTC)."""
    match = _INCOMING_TIME.match(key)
    if not match:
        return None
    try:
        return dt.datetime.strptime("".join(match.groups()), "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def count_incoming(
    keys: Iterator[str], now: dt.datetime, stale_minutes: float
) -> tuple[int, int, int]:
    """(objects, parked objects, objects older than `stale_minutes`) among incoming keys."""
    total = parked = stale = 0
    cutoff = now - dt.timedelta(minutes=stale_minutes)
    for key in keys:
        total += 1
        if key.startswith(PARKED_PREFIX):
            parked += 1
            continue
        opened = incoming_key_time(key)
        if opened is not None and opened < cutoff:
            stale += 1
    return total, parked, stale


class ConvertMetrics:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = new_registry()
        self.records = Counter(
            "convert_records",
            "Records converted, by outcome (published, duplicate, parked or an error reason)",
            ["outcome"],
            registry=self.registry,
        )
        self.parked_records = Counter(
            "convert_parked_records",
            "Records parked because their Histograms.json revision fetch failed unexpectedly",
            registry=self.registry,
        )
        self.parked_by_reason = Counter(
            "convert_parked_records_by_reason",
            "Parked records by the reason their revision could not be fetched",
            ["reason"],
            registry=self.registry,
        )
        self.unvalidated_records = Counter(
            "convert_unvalidated_records",
            "Records published with the histogram layouts their payload declares, by why the "
            "revision's Histograms.json was out of reach (re-validated later)",
            ["reason"],
            registry=self.registry,
        )
        self.batches = Counter(
            "convert_batches",
            "Batches processed, by result (done, failed: retried later)",
            ["result"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "convert_batch_seconds",
            "Time to process one batch, from claim to stored output",
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.claims = Counter(
            "convert_claims",
            "Work-queue messages claimed by this worker",
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._queue: WorkQueue | None = None
        self._incoming: BlobStore | None = None
        self.registry.register(CallbackCollector(self._shared_state))

    # -- counted as the worker works --------------------------------------------------------
    def observe_batch(self, report: BatchReport, seconds: float) -> None:
        for outcome, count in report.outcomes.items():
            self.records.labels(outcome).inc(count)
        self.parked_records.inc(report.outcomes.get(oc.PARKED, 0))
        for reason, count in report.parked_reasons.items():
            self.parked_by_reason.labels(reason).inc(count)
        for reason, count in report.unvalidated.items():
            self.unvalidated_records.labels(reason).inc(count)
        self.batches.labels("done").inc()
        self.batch_seconds.observe(seconds)

    def observe_failure(self, seconds: float) -> None:
        self.batches.labels("failed").inc()
        self.batch_seconds.observe(seconds)

    # -- read when scraped --------------------------------------------------------------------
    def queue(self) -> WorkQueue:
        if self._queue is None:
            self._queue = open_work_queue(self.settings)
        return self._queue

    def incoming(self) -> BlobStore:
        if self._incoming is None:
            self._incoming = open_store(
                self.settings.incoming_url,
                setting="TELEMETRY_INCOMING_URL",
                endpoint_url=self.settings.s3_endpoint_url,
            )
        return self._incoming

    def _shared_state(self) -> Iterator[tuple[str, str, dict, float]]:
        with self._lock:
            queue = self.queue()
            yield "convert_queue_depth", "Messages in the work queue", {}, queue.depth()
            yield (
                "convert_dead_letters",
                "Dead-lettered work-queue messages (python -m pipeline dead-letters)",
                {},
                queue.dead_letter_count(),
            )
            keys = (info.key for info in self.incoming().list(""))
            total, parked, stale = count_incoming(
                keys, dt.datetime.now(dt.UTC), self.settings.metrics_stale_minutes
            )
        yield "convert_incoming_objects", "Objects in the incoming store", {}, total
        yield (
            "convert_parked_objects",
            "Parked batches in the incoming store waiting for their retry",
            {},
            parked,
        )
        yield (
            "convert_incoming_stale_objects",
            "Incoming batches older than TELEMETRY_METRICS_STALE_MINUTES, not yet converted",
            {},
            stale,
        )

    def checks(self) -> dict[str, Callable[[], None]]:
        def queue() -> None:
            with self._lock:
                self.queue().check()

        def incoming() -> None:
            with self._lock:
                self.incoming().check()

        return {"queue": queue, "incoming_store": incoming}

    def close(self) -> None:
        with self._lock:
            for client in (self._queue, self._incoming):
                if client is not None:
                    client.close()
            self._queue = self._incoming = None


def instrument(worker: ConvertWorker, metrics: ConvertMetrics) -> None:
    """Count what `worker` does: wrap its batch processing and its queue's claims."""
    process = worker.processor.process
    claim = worker.queue.claim

    def timed_process(job: BatchMessage, *args: object, **kwargs: object) -> BatchReport:
        started = time.perf_counter()
        try:
            report = process(job, *args, **kwargs)
        except BaseException:
            metrics.observe_failure(time.perf_counter() - started)
            raise
        metrics.observe_batch(report, time.perf_counter() - started)
        return report

    def counted_claim(*args: object, **kwargs: object) -> Message | None:
        message = claim(*args, **kwargs)
        if message is not None:
            metrics.claims.inc()
        return message

    worker.processor.process = timed_process
    worker.queue.claim = counted_claim


def log_batch_fields(worker: ConvertWorker) -> None:
    """Log every line about a message with its id and batch key as fields (pipeline.logs)."""
    handle = worker.handle

    def handle_with_fields(message: Message) -> None:
        try:
            key = BatchMessage.from_body(message.body).key
        except ValueError:
            key = None
        with log_context(message_id=message.id, batch=key):
            handle(message)

    worker.handle = handle_with_fields


def instrument_worker(worker: ConvertWorker, port: int) -> MetricsServer | None:
    """Log batch keys as fields; count and serve metrics on `port` (0: off). Once per worker."""
    log_batch_fields(worker)
    if not port:
        return None
    metrics = ConvertMetrics(worker.settings)
    instrument(worker, metrics)
    return serve_metrics(metrics.registry, port, worker.settings.metrics_host, metrics.checks())
