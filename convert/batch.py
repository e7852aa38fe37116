"""Process one incoming batch end to end: read, convert, deduplicate, write, park, count.

Records published unvalidated (their revision out of reach) are also stashed for their
re-validation, and a stash (`unvalidated/...`) is processed like a batch: see revalidation.py.

The worker (worker.py) owns the queue message; this module owns everything between reading
the incoming object and having every output object stored. It never acknowledges nor deletes:
the caller does both after `process` returns, so a crash anywhere in here means redelivery,
and redelivery rewrites the same object keys with the same lines. The stats are counted once
per batch id: the counts and a mark of the batch commit together, and a redo adds nothing.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import io
import json
import logging
import re
import time
from pathlib import PurePosixPath

from sqlalchemy import Engine

from convert import outcomes as oc
from convert.dedup import Deduplicator
from convert.dimensions import submission_date
from convert.geo import GeoLocator, mask_addresses
from convert.outcomes import Outcome
from convert.record import RecordConverter
from convert.revalidation import MAX_DELAY, is_stash, stash_key, stash_object_id
from convert.writers import DEFAULT_MAX_OPEN, PartitionWriters
from pipeline.errors import CorruptBatch, ObjectNotFound
from pipeline.layout import PARKED_PREFIX, UNKNOWN, error_key
from pipeline.outcomes import (
    REVALIDATED,
    SOURCE_CONVERT,
    SOURCE_CONVERT_HIST,
    unvalidated_outcome,
)
from pipeline.queues.base import WorkQueue
from pipeline.records import Record, encode_record, iter_records
from pipeline.stats import DEFAULT_KEEP, add_many_once, hour_of
from pipeline.stores.base import BlobStore

log = logging.getLogger(__name__)

PARKED_SUFFIX = ".tpr"
_PARK_GENERATION = re.compile(r"-p\d+$")


def object_id_for(key: str) -> str:
    """The output object id of an incoming key: the whole key minus its suffix, `/` -> `_`.

    The whole key (not only its base name) so that two batches with the same file name in
    different directories never overwrite each other's output.
    """
    path = PurePosixPath(key.strip("/"))
    stem = str(path.with_suffix("")) if path.suffix else str(path)
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)


@dataclasses.dataclass
class BatchMessage:
    """One queue message: the incoming key and how often its records were parked already."""

    key: str
    park_attempt: int = 0
    not_before: float = 0.0

    @classmethod
    def from_body(cls, body: str) -> BatchMessage:
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("key"), str) or not data["key"]:
            raise ValueError("message body must be a JSON object with a non-empty 'key'")
        try:
            attempt, not_before = (
                int(data.get("park_attempt", 0)),
                float(data.get("not_before", 0.0)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed park_attempt/not_before in the message: {exc}") from exc
        return cls(data["key"], attempt, not_before)


#: Records converted before their docIds are claimed and their lines written out.
CHUNK_RECORDS = 500
#: ... or this many bytes of output lines and input bodies, whichever comes first.
CHUNK_BYTES = 16 * 1024 * 1024


@dataclasses.dataclass
class BatchReport:
    key: str
    missing: bool = False
    records: int = 0
    objects: int = 0
    outcomes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    lost_histograms: int = 0
    parked_key: str | None = None
    unvalidated: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    """Records published unvalidated, by reason (`revision_unavailable`, `missing_revision`)."""
    parked_reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    """Parked records by reason (for metrics; `outcomes["parked"]` is their total)."""
    stash_key: str | None = None  # where this batch's unvalidated records wait
    keep_incoming: bool = False  # a stash with records still waiting: keep it, it is re-queued
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    input_bytes: int = 0

    def log_line(self) -> str:
        errors = {
            k: v for k, v in sorted(self.outcomes.items()) if k not in (oc.PUBLISHED, oc.PARKED)
        }
        return (
            f"convert stats batch={self.key} records={self.records} "
            f"published={self.outcomes.get(oc.PUBLISHED, 0)} parked={self.outcomes.get(oc.PARKED, 0)} "
            f"errors={sum(errors.values())} {json.dumps(errors, separators=(',', ':'))} "
            f"lost_histograms={self.lost_histograms} "
            f"unvalidated={sum(self.unvalidated.values())} "
            f"{json.dumps(dict(sorted(self.unvalidated.items())), separators=(',', ':'))} "
            f"objects={self.objects} "
            f"bytes={self.input_bytes} seconds={self.seconds:.3f} cpu={self.cpu_seconds:.3f}"
        )


@dataclasses.dataclass
class _BatchState:
    """What one batch accumulates while its records stream through (small: counts and ids)."""

    job: BatchMessage
    object_id: str
    report: BatchReport
    stats_source: str = SOURCE_CONVERT
    records: int = 0
    last_date: str | None = None
    counts: dict[dt.datetime, collections.Counter] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    lost: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    parked: bytearray = dataclasses.field(default_factory=bytearray)
    seen: set[str] = dataclasses.field(default_factory=set)
    stash: bytearray = dataclasses.field(default_factory=bytearray)
    waiting: int = 0  # records of a stash job still waiting for their revision
    revalidated: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    revisions: set[str] = dataclasses.field(default_factory=set)

    @property
    def revalidating(self) -> bool:
        return is_stash(self.job.key)


class BatchProcessor:
    def __init__(
        self,
        incoming: BlobStore,
        published: BlobStore,
        queue: WorkQueue,
        converter: RecordConverter,
        dedup: Deduplicator,
        engine: Engine,
        park_delay: float = 300.0,
        park_max_attempts: int = 12,
        tmp_dir: str | None = None,
        stats_keep: dt.timedelta = DEFAULT_KEEP,
        geo: GeoLocator | None = None,
        max_open_files: int = DEFAULT_MAX_OPEN,
    ) -> None:
        self.incoming = incoming
        self.published = published
        self.queue = queue
        self.converter = converter
        self.dedup = dedup
        self.engine = engine
        self.park_delay = park_delay
        self.park_max_attempts = park_max_attempts
        self.tmp_dir = tmp_dir
        self.stats_keep = stats_keep
        self.geo = geo or GeoLocator()
        self.max_open_files = max_open_files

    def process(
        self, job: BatchMessage, data: bytes | None = None, stats_source: str = SOURCE_CONVERT
    ) -> BatchReport:
        """Convert every record of the batch and store every output; never ack or delete.

        `data` is the batch when it does not come from the incoming store (a replay of error
        records); `stats_source` the stats table's source its outcomes are counted under.

        Records stream through: each is converted, and every `CHUNK_RECORDS` records (or
        `CHUNK_BYTES` of output) the chunk's docIds are claimed for deduplication and its lines
        go to their writers, so a worker holds one chunk of converted output at a time, not
        the whole batch (a batch of 8 MiB payloads used to need 8 MiB per record).
        """
        started, started_cpu = time.monotonic(), time.process_time()
        report = BatchReport(job.key)
        if data is None:
            try:
                data = self.incoming.get(job.key)
            except ObjectNotFound:
                log.warning(
                    "batch %s: incoming object is gone (already processed); nothing to do",
                    job.key,
                )
                report.missing = True
                return report
        report.input_bytes = len(data)
        object_id = object_id_for(job.key)
        state = _BatchState(job, object_id, report, stats_source)
        corrupt: CorruptBatch | None = None
        with PartitionWriters(self.tmp_dir, self.max_open_files) as writers:
            chunk: list[tuple[Record, Outcome]] = []
            chunk_bytes = 0
            try:
                for record in iter_records(io.BytesIO(data), source=job.key):
                    record = self.geo.locate(record)  # the client's address ends here
                    outcome = self.converter.convert(record, object_id, state.revalidating)
                    state.records += 1
                    chunk.append((record, outcome))
                    chunk_bytes += len(outcome.line) + len(record.body)
                    if len(chunk) >= CHUNK_RECORDS or chunk_bytes >= CHUNK_BYTES:
                        self._write_chunk(state, chunk, writers)
                        chunk, chunk_bytes = [], 0
            except CorruptBatch as exc:
                log.error(
                    "batch %s: %s; the rest of the batch goes to errors/%s",
                    job.key,
                    exc,
                    oc.CORRUPT_BATCH,
                )
                corrupt = exc
            self._write_chunk(state, chunk, writers)
            del chunk
            if corrupt is not None:
                date = state.last_date or submission_date(int(time.time() * 1000))
                writers.write(
                    error_key(oc.CORRUPT_BATCH, date, object_id),
                    _corrupt_line(job.key, data, corrupt),
                )
                report.outcomes[oc.CORRUPT_BATCH] += 1
                now_hour = _hour(int(time.time() * 1000))
                state.counts[now_hour][(oc.CORRUPT_BATCH, UNKNOWN, UNKNOWN)] += 1
            del data
            finished = writers.finish()
            for obj in finished:
                self.published.put_file(obj.key, obj.path)
            report.objects = len(finished)
        if state.parked:
            report.parked_key = self._park(
                job,
                object_id,
                bytes(state.parked),
                report.outcomes[oc.PARKED],
                report.parked_reasons,
            )
        if state.stash:
            report.stash_key = self._stash(job, object_id, bytes(state.stash), report, state)
        elif state.revalidating and state.waiting:
            report.keep_incoming = True
            self._requeue_stash(job, state.waiting, report)
        report.records = state.records + (corrupt is not None)
        self._count(state)
        report.seconds = time.monotonic() - started
        report.cpu_seconds = time.process_time() - started_cpu
        return report

    def _count(self, state: _BatchState) -> None:
        """Add the batch's counts to the stats, once per batch (see `add_many_once`).

        A stash's records were counted when their batch was first converted; its passes add
        only `revalidated` when the last record stopped waiting.
        """
        job, now = state.job, dt.datetime.now(dt.UTC)
        if state.revalidating:
            if state.waiting or not state.revalidated:
                return
            stats = [(now, SOURCE_CONVERT_HIST, state.revalidated)]
        else:
            stats = [(hour, state.stats_source, counts) for hour, counts in state.counts.items()]
            if state.lost:
                stats.append((now, SOURCE_CONVERT_HIST, state.lost))
        # Once per batch: a redo (failed delete or ack, crash before the ack, lost lease) has
        # the same outcomes, so its counts are already in and adding them again would double.
        if stats and not add_many_once(
            self.engine, "convert", state.object_id, stats, keep=self.stats_keep
        ):
            log.info("batch %s: already counted in the stats by an earlier attempt", job.key)

    def _write_chunk(
        self, state: _BatchState, chunk: list[tuple[Record, Outcome]], writers: PartitionWriters
    ) -> None:
        """Deduplicate one chunk of converted records and hand each to its writer."""
        job, report = state.job, state.report
        self._deduplicate(state, chunk)
        for record, outcome in chunk:
            if outcome.kind == oc.PARKED and job.park_attempt >= self.park_max_attempts:
                outcome.kind = oc.REVISION_UNAVAILABLE
                outcome.details += f" (still unavailable after {job.park_attempt} parkings)"
            if outcome.kind == oc.PUBLISHED:
                writers.write(outcome.partition, outcome.line)
                self._note_validation(state, record, outcome)
            elif outcome.kind == oc.PARKED:
                state.parked += encode_record(
                    record.received_ms, record.path, record.headers, record.body
                )
                state.report.parked_reasons[outcome.reason or "unknown"] += 1
            else:
                key = error_key(outcome.kind, outcome.date, state.object_id)
                writers.write(key, _error_line(job.key, record, outcome))
            report.outcomes[outcome.kind] += 1
            report.lost_histograms += outcome.lost_histograms
            if outcome.lost_histograms and outcome.kind == oc.PUBLISHED:
                state.lost[(oc.INVALID_HISTOGRAM, outcome.channel, outcome.doc_type)] += 1
            state.counts[_hour(record.received_ms)][
                (outcome.kind, outcome.channel, outcome.doc_type)
            ] += 1
            state.last_date = outcome.date

    @staticmethod
    def _note_validation(state: _BatchState, record: Record, outcome: Outcome) -> None:
        """Stash, count and remember what a published record needs for its re-validation."""
        label = (outcome.channel, outcome.doc_type)
        if not outcome.unvalidated:
            if state.revalidating:
                state.revalidated[(REVALIDATED, *label)] += 1
            return
        state.report.unvalidated[outcome.reason] += 1
        state.lost[(unvalidated_outcome(outcome.reason), *label)] += 1
        state.revisions.add(outcome.details.split(": ", 1)[0])
        if not outcome.revalidate:
            return
        if state.revalidating:
            state.waiting += 1
        else:
            state.stash += encode_record(
                record.received_ms, record.path, record.headers, record.body
            )

    def _deduplicate(self, state: _BatchState, chunk: list[tuple[Record, Outcome]]) -> None:
        owners: dict[str, str] = {}
        for owner_id in {_owner_id(state, o) for _r, o in chunk if o.kind == oc.PUBLISHED}:
            ids = [
                o.doc_id
                for _r, o in chunk
                if o.kind == oc.PUBLISHED and _owner_id(state, o) == owner_id
            ]
            owners.update(self.dedup.claim(owner_id, ids))
        for _record, outcome in chunk:
            if outcome.kind != oc.PUBLISHED:
                continue
            mine = _owner_id(state, outcome)
            owner = owners.get(outcome.doc_id, mine)
            if owner != mine:
                outcome.details = f"first published by batch {owner}"
            elif outcome.doc_id in state.seen:
                outcome.details = "repeated within this batch"
            else:
                state.seen.add(outcome.doc_id)
                continue
            outcome.kind, outcome.line, outcome.partition = oc.DUPLICATE, b"", ""
            outcome.unvalidated = outcome.revalidate = False

    def _stash(
        self,
        job: BatchMessage,
        object_id: str,
        data: bytes,
        report: BatchReport,
        state: _BatchState,
    ) -> str:
        """Keep the records published unvalidated for their re-validation and queue it later."""
        key = stash_key(object_id)
        self.incoming.put(key, data)
        count = sum(report.unvalidated.values())
        delay = self._send_later(key, count, len(data), 1, self.park_delay)
        log.warning(
            "batch %s: published %d records unvalidated, their histograms converted with the "
            "layouts they declare (%s; revisions %s); re-validating them from %s in %.0fs",
            job.key,
            count,
            ", ".join(f"{n} x {r}" for r, n in sorted(report.unvalidated.items())),
            ", ".join(sorted(state.revisions)[:3]) + (" ..." if len(state.revisions) > 3 else ""),
            key,
            delay,
        )
        return key

    def _requeue_stash(self, job: BatchMessage, waiting: int, report: BatchReport) -> None:
        attempt = job.park_attempt + 1
        delay = min(self.park_delay * (2 ** min(job.park_attempt, 16)), MAX_DELAY)
        self._send_later(job.key, waiting, report.input_bytes, attempt, delay)
        log.warning(
            "batch %s: %d records still unvalidated (%s); next re-validation in %.0fs",
            job.key,
            waiting,
            ", ".join(f"{n} x {r}" for r, n in sorted(report.unvalidated.items())),
            delay,
        )

    def _send_later(self, key: str, records: int, size: int, attempt: int, delay: float) -> float:
        body = {
            "key": key,
            "records": records,
            "bytes": size,
            "park_attempt": attempt,
            "not_before": time.time() + delay,
        }
        self.queue.send(json.dumps(body))
        return delay

    def _park(
        self,
        job: BatchMessage,
        object_id: str,
        data: bytes,
        count: int,
        reasons: collections.Counter | None = None,
    ) -> str:
        """Store the records whose revision is unavailable as a new batch and queue it later."""
        root = _PARK_GENERATION.sub("", object_id.removeprefix(PARKED_PREFIX.replace("/", "_")))
        attempt = job.park_attempt + 1
        key = f"{PARKED_PREFIX}{root}-p{attempt}{PARKED_SUFFIX}"
        delay = self.park_delay * (2 ** min(job.park_attempt, 6))
        self.incoming.put(key, data)
        body = {
            "key": key,
            "records": count,
            "bytes": len(data),
            "park_attempt": attempt,
            "not_before": time.time() + delay,
        }
        self.queue.send(json.dumps(body))
        why = ", ".join(f"{n} x {r}" for r, n in sorted((reasons or {}).items())) or "unknown"
        log.info(
            "batch %s: parked %d records as %s, retry in %.0fs; their Histograms.json could not "
            "be fetched: %s",
            job.key,
            count,
            key,
            delay,
            why,
        )
        return key


def _owner_id(state: _BatchState, outcome: Outcome) -> str:
    """The batch id a published record claims its docId for: its object's id."""
    return stash_object_id(state.object_id) if outcome.unvalidated else state.object_id


def _hour(received_ms: int) -> dt.datetime:
    """The hour (UTC, truncated) a record was received in: the stats table's time bucket."""
    try:
        return hour_of(dt.datetime.fromtimestamp(received_ms // 3_600_000 * 3600, dt.UTC))
    except (OverflowError, ValueError, OSError):
        return hour_of(dt.datetime.now(dt.UTC))


def _error_line(batch_key: str, record: Record, outcome: Outcome) -> bytes:
    entry: dict[str, object] = {
        "reason": outcome.kind,
        "details": outcome.details,
        "docId": outcome.doc_id,
        "batch": batch_key,
        "offset": record.offset,
        "received_ms": record.received_ms,
        "path": record.path,
        "headers": dict(record.headers),
    }
    if outcome.kind == oc.DUPLICATE:
        entry["body_bytes"] = len(record.body)  # metadata only
    else:
        entry["body"] = base64.b64encode(record.body).decode("ascii")
    return json.dumps(entry, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n"


def _corrupt_line(batch_key: str, data: bytes, exc: CorruptBatch) -> bytes:
    entry = {
        "reason": oc.CORRUPT_BATCH,
        "details": exc.problem,
        "docId": "",
        "batch": batch_key,
        "offset": exc.offset,
        "body": base64.b64encode(mask_addresses(data[exc.offset :])).decode("ascii"),
    }
    return json.dumps(entry, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n"
