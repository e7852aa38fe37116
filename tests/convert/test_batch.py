"""The worker and batch processor on local stores, the SQLite queue and SQLite database.

Uses the stand-in histogram converter; the real one is exercised by test_convert_e2e.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time

import pytest
from sqlalchemy import select

from convert import outcomes as oc
from convert.batch import BatchMessage, BatchProcessor, object_id_for
from convert.dedup import Deduplicator
from convert.worker import EXIT_WORK_LEFT, ConvertWorker, LeaseExtender, WorkerOptions
from pipeline.db import make_engine
from pipeline.errors import StoreError
from pipeline.records import encode_record
from pipeline.stats import HourlyStat
from tests.support.convert import (
    RECEIVED_MS,
    error_entries,
    gz,
    make_batch,
    make_worker,
    read_all,
    stub_tools,
    submit,
    telemetry_path,
    v1_payload,
)
from tests.support.paused_convert import PausePoint, paused_process

PARTITION = "idle_daily/Firefox/release/23.0.1/20130814063812.20231114.v2.log.{}.lz4"


def good(doc_id=None):
    return (telemetry_path(doc_id), {"Content-Encoding": "gzip"}, gz(v1_payload()))


def test_object_id_uses_whole_key_without_suffix():
    assert object_id_for("2023/11/14/host-1.tpr") == "2023_11_14_host-1"
    assert object_id_for("parked/x-p1.tpr") == "parked_x-p1"
    assert object_id_for("plain") == "plain"


def test_batch_is_published_acked_and_incoming_deleted(settings):
    worker = make_worker(settings)
    submit(worker, "b/one.tpr", make_batch([good(), good()]))
    assert worker.run() == 0
    published = read_all(worker.published)
    assert list(published) == [PARTITION.format("b_one")]
    assert len(published[PARTITION.format("b_one")]) == 2
    assert not worker.incoming.exists("b/one.tpr")
    assert worker.queue.depth() == 0


def test_reprocessing_a_batch_overwrites_identically_and_counts_no_duplicates(settings):
    worker = make_worker(settings)
    data = make_batch([good(), good(), ("/bad", {}, b"x")])
    worker.incoming.put("b/again.tpr", data)
    first = worker.processor.process(BatchMessage("b/again.tpr"))
    snapshot = read_all(worker.published)
    second = worker.processor.process(BatchMessage("b/again.tpr"))
    assert read_all(worker.published) == snapshot
    assert first.outcomes == second.outcomes == {oc.PUBLISHED: 2, oc.BAD_PATH: 1}


def test_duplicates_across_batches_are_metadata_only_errors(settings):
    worker = make_worker(settings)
    doc = "0d0d0d0d-0000-4000-8000-000000000001"
    submit(worker, "b1.tpr", make_batch([good(doc)]))
    submit(worker, "b2.tpr", make_batch([good(doc), good(doc)]))
    worker.run()
    published = read_all(worker.published)
    assert [len(published[PARTITION.format("b1")])] == [1]
    assert PARTITION.format("b2") not in published
    entries = error_entries(worker.published)
    assert [e["reason"] for e in entries] == [oc.DUPLICATE, oc.DUPLICATE]
    assert all(e["docId"] == doc and "body" not in e and e["body_bytes"] > 0 for e in entries)
    assert "first published by batch b1" in entries[0]["details"]


def test_dedup_forgets_ids_after_the_window(settings):
    engine = make_engine(settings.database_url)
    ConvertWorker(settings, WorkerOptions(), tools=stub_tools())  # creates the tables
    dedup = Deduplicator(engine, window_days=7)
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert dedup.claim("a", ["x"], now) == {"x": "a"}
    assert dedup.claim("b", ["x"], now + dt.timedelta(days=6)) == {"x": "a"}
    assert dedup.claim("b", ["x"], now + dt.timedelta(days=8)) == {"x": "b"}


def test_parked_records_are_requeued_with_a_delay_and_published_later(settings):
    worker = make_worker(settings, available=False, park_delay=3, drain_wait=0)
    submit(worker, "p.tpr", make_batch([good(), ("/bad", {}, b"")]))
    assert worker.run() == EXIT_WORK_LEFT  # --drain-wait 0: the parked batch is left queued
    assert list(worker.incoming.list()) and worker.queue.depth() == 1
    assert [i.key for i in worker.incoming.list()] == ["parked/p-p1.tpr"]
    assert not read_all(worker.published, "idle_daily/")
    # The revision becomes available; the parked batch is retried once its delay has passed.
    retry = make_worker(settings, available=True, drain_wait=60)
    assert retry.run() == 0
    published = read_all(retry.published, "idle_daily/")
    assert list(published) == [PARTITION.format("parked_p-p1")]
    assert retry.queue.depth() == 0 and not list(retry.incoming.list())


def test_records_parked_too_often_go_to_errors_revision_unavailable(settings):
    worker = make_worker(settings, available=False, park_max_attempts=2)
    submit(worker, "parked/q-p2.tpr", make_batch([good()]), park_attempt=2)
    worker.run()
    entries = error_entries(worker.published)
    assert [e["reason"] for e in entries] == [oc.REVISION_UNAVAILABLE]
    assert "body" in entries[0] and worker.queue.depth() == 0


def test_parking_a_parked_batch_keeps_one_root_name(settings):
    worker = make_worker(settings, available=False, park_delay=1000)
    submit(worker, "parked/r-p1.tpr", make_batch([good()]), park_attempt=1)
    assert worker.run() == EXIT_WORK_LEFT  # the batch parked again is due in 2000 s
    assert [i.key for i in worker.incoming.list()] == ["parked/r-p2.tpr"]


def test_corrupt_tail_of_a_batch_goes_to_errors_corrupt_batch(settings):
    worker = make_worker(settings)
    bad = bytearray(encode_record(RECEIVED_MS, telemetry_path(), {}, b"{}"))
    bad[-1] ^= 0xFF  # checksum mismatch, followed by another record: not a torn tail
    data = make_batch([good()]) + bytes(bad) + make_batch([good()])
    submit(worker, "c.tpr", data)
    worker.run()
    entries = error_entries(worker.published)
    assert [e["reason"] for e in entries] == [oc.CORRUPT_BATCH]
    assert len(read_all(worker.published, "idle_daily/")[PARTITION.format("c")]) == 1


def test_message_without_a_key_is_kept_and_acknowledged(settings):
    worker = make_worker(settings)
    worker.queue.send("not json")
    worker.run()
    entries = error_entries(worker.published)
    assert entries[0]["reason"] == oc.BAD_MESSAGE and entries[0]["body"] == "not json"
    assert worker.queue.depth() == 0


def test_message_for_a_missing_object_is_acknowledged(settings):
    worker = make_worker(settings)
    worker.queue.send(json.dumps({"key": "gone.tpr"}))
    worker.run()
    assert worker.queue.depth() == 0 and not list(worker.published.list())


def test_store_failure_releases_the_message_and_keeps_the_batch(settings):
    worker = make_worker(settings, retry_delay=0)

    def failing_put_file(key, path):
        raise StoreError("published store is down")

    worker.published.put_file = failing_put_file
    submit(worker, "f.tpr", make_batch([good()]))
    message = worker.queue.claim()
    worker.handle(message)
    assert worker.incoming.exists("f.tpr")
    again = worker.queue.claim()
    assert again is not None and again.attempts == 2


def test_stats_are_counted_per_outcome_channel_and_doc_type(settings):
    worker = make_worker(settings)
    payload = v1_payload()
    payload["histograms"]["B"] = {"values": {"0": 1.5}}
    submit(
        worker,
        "s.tpr",
        make_batch(
            [
                good(),
                (telemetry_path(), {}, json.dumps(payload).encode()),
                (telemetry_path(), {}, b"{oops"),
            ]
        ),
    )
    worker.run()
    with make_engine(settings.database_url).connect() as conn:
        rows = conn.execute(
            select(
                HourlyStat.source,
                HourlyStat.outcome,
                HourlyStat.channel,
                HourlyStat.doc_type,
                HourlyStat.count,
            )
        ).all()
    assert sorted(rows) == [
        ("convert", oc.BAD_JSON, "release", "idle_daily", 1),
        ("convert", oc.PUBLISHED, "release", "idle_daily", 2),
        ("convert_hist", oc.INVALID_HISTOGRAM, "release", "idle_daily", 1),
    ]


def test_stats_line_is_logged_per_batch(settings, caplog):
    worker = make_worker(settings)
    submit(worker, "l.tpr", make_batch([good()]))
    with caplog.at_level("INFO"):
        worker.run()
    assert any(
        "convert stats batch=l.tpr records=1 published=1" in r.getMessage() for r in caplog.records
    )


def test_heartbeat_keeps_a_short_lease_alive(settings):
    worker = make_worker(settings)
    worker.queue.send("{}")
    message = worker.queue.claim(lease_seconds=0.6)
    with LeaseExtender(worker.queue, message, 0.6):
        time.sleep(2.0)
        assert worker.queue.claim(wait_seconds=0) is None
    assert worker.queue.ack(message) is True


def run_paused(monkeypatch, settings, spec: str) -> tuple[PausePoint, threading.Thread, dict]:
    """Process a two-partition batch in a thread, the crash tests' pause wrapped around it."""
    pause = PausePoint(spec)
    monkeypatch.setattr(BatchProcessor, "process", paused_process(BatchProcessor.process, pause))
    worker = make_worker(settings)
    beta = ("idle-daily", "Firefox", "23.0.1", "beta", "20130814063812")
    other = (telemetry_path(dims=beta), {"Content-Encoding": "gzip"}, gz(v1_payload()))
    worker.incoming.put("b/paused.tpr", make_batch([good(), good(), other]))
    result: dict = {}

    def process() -> None:
        result["report"] = worker.processor.process(BatchMessage("b/paused.tpr"))
        result["published"] = read_all(worker.published)

    thread = threading.Thread(target=process, daemon=True)
    thread.start()
    return pause, thread, result


def test_crash_point_is_inert_unless_its_point_and_count_come(monkeypatch, settings):
    pause, thread, result = run_paused(monkeypatch, settings, "uploads:3")
    thread.join(timeout=60)
    assert not thread.is_alive(), "a pause point that never comes blocked the batch"
    assert not pause.was_reached.is_set()
    assert result["report"].objects == 2 and len(result["published"]) == 2


@pytest.mark.parametrize(("spec", "published"), [("records:2", 0), ("uploads:1", 1)])
def test_crash_point_stops_the_batch_there_until_released(monkeypatch, settings, spec, published):
    pause, thread, result = run_paused(monkeypatch, settings, spec)
    assert pause.was_reached.wait(timeout=60), "the batch never reached the pause point"
    assert thread.is_alive() and "report" not in result
    assert len(read_all(make_worker(settings).published)) == published
    pause.release.set()
    thread.join(timeout=60)
    assert not thread.is_alive() and result["report"].objects == 2


def test_worker_options_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        WorkerOptions().drain = True  # type: ignore[misc]


def test_message_with_malformed_park_fields_is_kept_and_acknowledged(settings):
    worker = make_worker(settings)
    worker.queue.send(json.dumps({"key": "x.tpr", "park_attempt": None}))
    worker.run()
    entries = error_entries(worker.published)
    assert entries[0]["reason"] == oc.BAD_MESSAGE and "park_attempt" in entries[0]["details"]
    assert worker.queue.depth() == 0


def test_failed_delete_after_storing_leaves_the_message_for_redelivery(settings):
    worker = make_worker(settings)

    def failing_delete(key):
        raise StoreError("incoming store is down")

    worker.incoming.delete = failing_delete
    submit(worker, "d.tpr", make_batch([good()]))
    worker.handle(worker.queue.claim(lease_seconds=0.5))
    assert read_all(worker.published, "idle_daily/")  # output stored
    assert worker.queue.depth() == 1  # not acknowledged: redone once the lease runs out
    assert worker.queue.claim(wait_seconds=30) is not None


def test_parked_records_are_logged_and_reported_with_their_reason(settings, caplog):
    worker = make_worker(settings, available=False, drain_wait=0)
    worker.incoming.put("why.tpr", make_batch([good(), good()]))
    with caplog.at_level("INFO", logger="convert.batch"):
        report = worker.processor.process(BatchMessage("why.tpr"))
    assert report.parked_reasons == {oc.REVISION_UNAVAILABLE: 2}
    assert "could not be fetched: 2 x revision_unavailable" in caplog.text
