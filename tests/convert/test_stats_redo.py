"""A batch that is redone (failed delete or ack, crash before the ack, lost lease) is counted once.

The batch's counts and a mark naming the batch are written in one transaction; a redo finds the
mark and adds nothing (its outcomes are the same: outputs are named from the batch id, and the
dedup owners are the same batch). Runs on SQLite and, when reachable, PostgreSQL.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import threading

from sqlalchemy import select

import pipeline.stats as pipeline_stats
from convert import outcomes as oc
from convert.batch import BatchMessage
from convert.worker import ConvertWorker, WorkerOptions
from pipeline.db import make_engine
from pipeline.errors import StoreError
from pipeline.stats import HourlyStat, read_counts
from tests.support.convert import (
    gz,
    make_batch,
    stub_tools,
    telemetry_path,
    v1_payload,
)

HOUR = dt.datetime(2026, 1, 1, 5, 0)
KEY = ("published", "release", "main")


def make_worker(settings) -> ConvertWorker:
    return ConvertWorker(settings, WorkerOptions(drain=True), tools=stub_tools())


def batch() -> bytes:
    lossy = v1_payload()
    lossy["histograms"]["B"] = {"values": {"0": 1.5}}  # published, one histogram lost
    return make_batch(
        [
            (telemetry_path(), {"Content-Encoding": "gzip"}, gz(v1_payload())),
            (telemetry_path(), {}, json.dumps(lossy).encode()),
            (telemetry_path(), {}, b"{oops"),
        ]
    )


ONE_RUN = {
    ("convert", oc.PUBLISHED): 2,
    ("convert", oc.BAD_JSON): 1,
    ("convert_hist", oc.INVALID_HISTOGRAM): 1,
}


def stats(settings) -> dict[tuple[str, str], int]:
    with make_engine(settings.database_url).connect() as conn:
        rows = conn.execute(select(HourlyStat.source, HourlyStat.outcome, HourlyStat.count)).all()
    found: collections.Counter = collections.Counter()
    for source, outcome, count in rows:
        found[(source, outcome)] += count
    return dict(found)


def test_a_batch_redone_after_a_failed_delete_is_counted_once(settings):
    """The audit's probe: the delete fails after the counts are written, the batch is redone."""
    worker = make_worker(settings)
    worker.incoming.put("b/redo.tpr", batch())
    worker.queue.send(json.dumps({"key": "b/redo.tpr"}))
    real_delete = worker.incoming.delete

    def failing_delete(key):
        raise StoreError("incoming store is down")

    worker.incoming.delete = failing_delete
    worker.handle(worker.queue.claim(lease_seconds=0.3))
    assert stats(settings) == ONE_RUN
    worker.incoming.delete = real_delete
    message = worker.queue.claim(wait_seconds=30)  # redelivered once the lease ran out
    assert message is not None
    worker.handle(message)
    assert worker.queue.depth() == 0
    assert not worker.incoming.exists("b/redo.tpr")
    assert stats(settings) == ONE_RUN


def test_processing_the_same_batch_twice_counts_it_once(settings):
    """A crash between the stats write and the ack, or a lost lease: process() runs again."""
    worker = make_worker(settings)
    worker.incoming.put("b/twice.tpr", batch())
    first = worker.processor.process(BatchMessage("b/twice.tpr"))
    second = worker.processor.process(BatchMessage("b/twice.tpr"))
    assert first.outcomes == second.outcomes
    assert stats(settings) == ONE_RUN
    # another batch with the same content is counted (the mark is per batch id)
    worker.incoming.put("b/other.tpr", batch())
    worker.processor.process(BatchMessage("b/other.tpr"))
    assert stats(settings) == {key: 2 * n for key, n in ONE_RUN.items()}


def test_counts_of_a_batch_id_are_added_once(engine):  # noqa: F811 - the imported fixture
    counts = [(HOUR, "convert", {KEY: 3}), (HOUR, "convert_hist", {KEY: 1})]
    assert pipeline_stats.add_many_once(engine, "convert", "batch-a", counts) is True
    assert pipeline_stats.add_many_once(engine, "convert", "batch-a", counts) is False
    assert (
        pipeline_stats.add_many_once(engine, "convert", "batch-b", [(HOUR, "convert", {KEY: 2})])
        is True
    )
    assert (
        pipeline_stats.add_many_once(engine, "other", "batch-a", [(HOUR, "convert", {KEY: 1})])
        is True
    )
    assert read_counts(engine, HOUR) == [
        (HOUR, "convert", *KEY, 6),
        (HOUR, "convert_hist", *KEY, 1),
    ]


def test_concurrent_redos_of_one_batch_count_it_once(engine):  # noqa: F811
    results: list[bool] = []

    def redo() -> None:
        results.append(
            pipeline_stats.add_many_once(engine, "convert", "raced", [(HOUR, "convert", {KEY: 1})])
        )

    threads = [threading.Thread(target=redo) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [False] * 5 + [True]
    assert read_counts(engine, HOUR) == [(HOUR, "convert", *KEY, 1)]


def test_marks_older_than_the_retention_are_purged(engine):  # noqa: F811
    keep = dt.timedelta(days=7)
    old = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    pipeline_stats.add_many_once(
        engine, "convert", "old", [(HOUR, "convert", {KEY: 1})], keep=keep, now=old
    )
    later = old + keep + dt.timedelta(minutes=1)
    pipeline_stats.add_many_once(
        engine, "convert", "new", [(HOUR, "convert", {KEY: 1})], keep=keep, now=later
    )
    with engine.connect() as conn:
        marks = sorted(conn.execute(select(pipeline_stats.CountedBatch.batch_id)).scalars())
    assert marks == ["new"]


def test_empty_counts_leave_no_mark(engine):  # noqa: F811
    assert (
        pipeline_stats.add_many_once(engine, "convert", "empty", [(HOUR, "convert", {KEY: 0})])
        is False
    )
    with engine.connect() as conn:
        assert list(conn.execute(select(pipeline_stats.CountedBatch.batch_id)).scalars()) == []
