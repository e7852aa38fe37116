"""The worker loop: claim a batch message, keep its lease alive, process, then ack and delete.

One `ConvertWorker` per process, each with its own queue client, store clients and database engine.
"""

from __future__ import annotations

import ctypes
import dataclasses
import datetime as dt
import gc
import json
import logging
import os
import signal
import sys
import threading
import time

import lz4.frame

from convert import outcomes as oc
from convert.batch import BatchMessage, BatchProcessor
from convert.dedup import Deduplicator
from convert.geo import GeoLocator
from convert.histogram_tools import HistogramTools, real_tools
from convert.record import RecordConverter
from pipeline.allow_list import AllowList
from pipeline.config import Settings
from pipeline.db import init_db, make_engine
from pipeline.errors import ConfigError, PipelineError
from pipeline.layout import Schema, error_key
from pipeline.queues import Message, QueueCensus, WorkQueue, open_work_queue
from pipeline.stats import DEFAULT_KEEP
from pipeline.stores import open_store

log = logging.getLogger(__name__)

#: With --drain: how often an idle worker re-checks whether the queue has become empty.
DRAIN_POLL_SECONDS = 0.1

#: Exit status of `--drain` when it gives up with messages still queued that it cannot claim.
EXIT_WORK_LEFT = 3

DEAD_LETTERS_HINT = "batches that keep failing end up in `python -m pipeline dead-letters`"


@dataclasses.dataclass(frozen=True)
class WorkerOptions:
    drain: bool = False
    drain_wait: float | None = None
    """With `drain`: how long to keep polling, after the queue last changed, while messages are
    left that this worker cannot claim; then give up with `EXIT_WORK_LEFT`.

    None (the default) waits up to the queue lease for messages that may be held by another
    worker (long enough for it to finish, or, if it died, for the message to come back), and
    not at all for messages put back with a delay (the queue's `census` tells the two apart).
    An explicit value is the wait for both, so a delayed message that comes due within it is
    still processed.
    """
    poll_seconds: float = 5.0
    park_delay: float = 300.0
    park_max_attempts: int = 12
    retry_delay: float = 30.0
    metrics_port: int = 0  # serve this worker's metrics and health there (0: off)


class LeaseExtender:
    """Extend a message's lease every third of the lease while a batch is being processed."""

    def __init__(self, queue: WorkQueue, message: Message, lease: float) -> None:
        self.queue, self.message, self.lease = queue, message, lease
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"lease-extender-{message.id}", daemon=True
        )

    def _run(self) -> None:
        interval = max(self.lease / 3.0, 0.05)
        while not self._stop.wait(interval):
            try:
                if not self.queue.extend(self.message, self.lease):
                    log.warning(
                        "message %s: lease lost; another worker may redo this batch "
                        "(its output is identical)",
                        self.message.id,
                    )
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next interval
                log.warning(
                    "message %s: could not extend the lease", self.message.id, exc_info=True
                )

    def __enter__(self) -> LeaseExtender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class ConvertWorker:
    def __init__(
        self,
        settings: Settings,
        options: WorkerOptions,
        tools: HistogramTools | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        endpoint = settings.s3_endpoint_url
        self.incoming = open_store(
            settings.incoming_url, setting="TELEMETRY_INCOMING_URL", endpoint_url=endpoint
        )
        self.published = open_store(
            settings.published_url, setting="TELEMETRY_PUBLISHED_URL", endpoint_url=endpoint
        )
        self.queue = open_work_queue(settings)
        self.engine = make_engine(settings.database_url)
        init_db(self.engine)
        converter = RecordConverter(
            tools or real_tools(settings),
            Schema.load(settings.schema_path),
            settings.max_decompressed_bytes,
            AllowList.parse(settings.allowed_doc_types),
        )
        self.processor = BatchProcessor(
            self.incoming,
            self.published,
            self.queue,
            converter,
            Deduplicator(self.engine, settings.dedup_window_days),
            self.engine,
            park_delay=options.park_delay,
            park_max_attempts=options.park_max_attempts,
            # remember counted batches at least as long as their dedup claims
            stats_keep=max(dt.timedelta(days=settings.dedup_window_days), DEFAULT_KEEP),
            geo=GeoLocator.from_settings(settings),
        )
        self.stopping = threading.Event()
        self.batches = 0

    def run(self) -> int:
        """Process messages until stopped (or, with `drain`, until the queue is empty).

        Returns 0, or with `drain` EXIT_WORK_LEFT when messages are still queued at the end.
        """
        log.info("worker ready: claiming from %s (drain=%s)", self.queue.url, self.options.drain)
        # With drain, while nothing can be claimed: (monotonic time, depth) when the queue last
        # changed, and whether the wait was logged.
        idle: tuple[float, int] | None = None
        told = False
        status = 0
        wait = 1.0 if self.options.drain else self.options.poll_seconds
        while not self.stopping.is_set():
            try:
                message = self._claim(wait)
            except PipelineError as exc:
                if self.options.drain:
                    raise
                log.error("cannot claim from %s (%s); retrying in %.0fs", self.queue.url, exc, wait)
                self.stopping.wait(wait)
                continue
            if message is not None:
                idle, told = None, False
                self.handle(message)
                continue
            if not self.options.drain:
                continue
            census = self.queue.census()
            depth = census.total
            if depth == 0:
                break
            if idle is None or idle[1] != depth:
                idle, told = (time.monotonic(), depth), False  # progress elsewhere: wait anew
            gave_up, waiting = self._drain_verdict(census, time.monotonic() - idle[0])
            if gave_up is not None:
                status = self._work_left(depth, gave_up)
                break
            if waiting and not told:
                log.info(
                    "drain: %d message(s) not claimable (held by another worker, or delayed); "
                    "waiting up to %.0fs for them",
                    depth,
                    waiting,
                )
                told = True
        else:
            if self.options.drain:  # stopped by a signal: 0 only if nothing is left
                status = self._stopped_drain_status()
        self.close()
        return status

    def _drain_verdict(self, census: QueueCensus, waited: float) -> tuple[str | None, float]:
        """While draining with `census` left, none claimable for `waited` seconds: (why to
        give up, or None) and how long this wait may last in all (0 if not waiting on messages
        that are not delayed)."""
        auto = self.options.drain_wait is None
        held_wait = self.settings.queue_lease_seconds if auto else self.options.drain_wait
        delayed_wait = 0.0 if auto else self.options.drain_wait
        if census.total > census.delayed:
            # Some are held by another worker (or visible, but not to us yet): wait a lease.
            if waited < held_wait:
                return None, held_wait
            return (
                "delayed retries, parked batches or batches held by another worker, "
                f"none claimable after waiting {waited:.0f}s"
            ), 0.0
        due_in = (census.next_due or time.time()) - time.time()
        if waited + due_in <= delayed_wait:
            return None, 0.0  # the next delayed one comes due within the wait
        return f"delayed retries or parked batches, the next due in {max(due_in, 0):.0f}s", 0.0

    def _stopped_drain_status(self) -> int:
        try:
            left = self.queue.depth()
        except PipelineError as exc:
            log.error("drain: stopped; cannot tell whether the queue is empty (%s)", exc)
            return EXIT_WORK_LEFT
        return self._work_left(left, "stopped before the queue was empty") if left else 0

    @staticmethod
    def _work_left(left: int, why: str) -> int:
        log.warning(
            "drain: %d message(s) still queued: %s; run again later (%s)",
            left,
            why,
            DEAD_LETTERS_HINT,
        )
        return EXIT_WORK_LEFT

    def _claim(self, wait: float) -> Message | None:
        """Claim one message; when draining, stop waiting once waiting cannot help.

        A draining worker used to spend its last second polling a queue that was already empty,
        or whose last message another worker was finishing: a second per worker per run, more
        than a tenth of a short drain. Now it polls in short slices and re-checks the census:
        it stops when the queue is empty, or holds only delayed messages not due in the wait.
        """
        lease = self.settings.queue_lease_seconds
        if not self.options.drain:
            return self.queue.claim(lease, wait_seconds=wait)
        deadline = time.monotonic() + wait
        while True:
            message = self.queue.claim(lease, wait_seconds=0.0)
            if message is not None:
                return message
            census = self.queue.census()
            if census.total == 0:
                # Confirm with a short wait: a claim that does not wait may miss a visible
                # message and the census may lag a send (the queue contract allows both).
                return self.queue.claim(lease, wait_seconds=DRAIN_POLL_SECONDS)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or _none_due_within(census, remaining):
                return None
            message = self.queue.claim(lease, wait_seconds=min(DRAIN_POLL_SECONDS, remaining))
            if message is not None:
                return message

    def handle(self, message: Message) -> None:
        try:
            job = BatchMessage.from_body(message.body)
        except ValueError as exc:
            self._reject_message(message, str(exc))
            return
        remaining = job.not_before - time.time()
        if remaining > 0:
            self._release(message, remaining)
            return
        lease = self.settings.queue_lease_seconds
        with LeaseExtender(self.queue, message, lease):
            try:
                report = self.processor.process(job)
            except Exception:  # noqa: BLE001 - any failure: retry the whole batch later
                delay = self.options.retry_delay * message.attempts
                log.exception(
                    "batch %s (message %s, attempt %d) failed; retry in %.0fs",
                    job.key,
                    message.id,
                    message.attempts,
                    delay,
                )
                self._release(message, delay)
                return
        log.info("%s", report.log_line())
        try:
            if not report.missing and not report.keep_incoming:
                self.incoming.delete(job.key)
            acked = self.queue.ack(message)
        except PipelineError as exc:
            # Every output is stored; a redelivery rewrites the same objects, so just leave it.
            log.error(
                "batch %s: stored, but delete/ack failed (%s); it will be redone", job.key, exc
            )
            return
        if not acked:
            log.warning(
                "batch %s: lease of message %s ran out before the ack; the redelivery "
                "will find the batch done",
                job.key,
                message.id,
            )
        self.batches += 1

    def _release(self, message: Message, delay: float) -> None:
        """Put a message back, claimable again after `delay` seconds."""
        self.queue.release(message, delay_seconds=delay)

    def _reject_message(self, message: Message, problem: str) -> None:
        """A message that names no batch is kept in errors/bad_message, then acknowledged."""
        date = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
        entry = {
            "reason": oc.BAD_MESSAGE,
            "details": problem,
            "message_id": message.id,
            "body": message.body,
        }
        data = lz4.frame.compress(json.dumps(entry, sort_keys=True).encode("utf-8") + b"\n")
        self.published.put(error_key(oc.BAD_MESSAGE, date, f"message-{message.id}"), data)
        log.error("message %s: %s; kept in errors/%s", message.id, problem, oc.BAD_MESSAGE)
        self.queue.ack(message)

    def close(self) -> None:
        self.queue.close()
        self.engine.dispose()


def _none_due_within(census: QueueCensus, seconds: float) -> bool:
    """Whether every message in `census` is delayed, the soonest beyond `seconds` from now."""
    return (
        census.total == census.delayed
        and census.next_due is not None
        and census.next_due > time.time() + seconds
    )


def setup_logging(level: str | None, settings: Settings | None = None) -> None:
    """pipeline.logs for convert (TELEMETRY_LOG_FORMAT, TELEMETRY_LOG_LEVEL, --log-level)."""
    from pipeline.logs import setup_logging as setup

    setup("convert", level, settings=settings)


#: Cyclic GC generation-0 threshold in worker processes (Python's default is 700).
GC_THRESHOLD = 10_000


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a process that converts records.

    Parsing one payload allocates over a thousand dicts and lists that reference counting
    frees again; with the default threshold the collector ran during almost every parse and
    kept promoting the half-built payload, and every older-generation pass walked all the
    long-lived objects (loaded definitions, SQLAlchemy metadata): ~8% of a worker's CPU.
    Freezing what exists after start-up takes those objects out of every pass, and a higher
    threshold lets reference counting free each record's objects before a pass starts.
    Cycles are still collected, just less often.
    """
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def run_worker(
    settings: Settings,
    options: WorkerOptions,
    log_level: str | None = None,
) -> int:
    """Run one worker in this process until it stops; SIGTERM/SIGINT finish the current batch."""
    setup_logging(log_level, settings)
    from convert.metrics import instrument_worker

    worker = ConvertWorker(settings, options)
    instrument_worker(worker, options.metrics_port)
    tune_gc()

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the current batch, then stopping", signum)
        worker.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return worker.run()


def run_worker_process(
    settings: Settings,
    options: WorkerOptions,
    log_level: str | None,
    parent_pid: int | None = None,
) -> None:
    """Target of each `--workers N` child process (importable, as spawn requires)."""
    if parent_pid is not None:
        stop_with_parent(parent_pid)
    try:
        status = run_worker(settings, options, log_level)
    except ConfigError as exc:  # one line, as the parent prints it for a single worker
        log.error("configuration error: %s", exc)
        status = 2
    sys.exit(status)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def stop_with_parent(parent_pid: int) -> None:
    """Get SIGTERM when the parent `python -m convert` dies, however it dies.

    A SIGKILLed parent cannot forward a signal, and its orphaned workers used to go on
    claiming batches that no supervisor would stop. On Linux the kernel sends the signal
    (prctl PR_SET_PDEATHSIG); elsewhere a thread watches the parent pid. SIGTERM lets the
    worker finish the batch it holds, as at any stop.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    except (OSError, AttributeError):
        threading.Thread(
            target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True
        ).start()
    if os.getppid() != parent_pid:  # it died before the request above was in place
        os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent(parent_pid: int, interval: float = 1.0) -> None:
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os.kill(os.getpid(), signal.SIGTERM)
