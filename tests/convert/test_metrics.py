"""Convert's Prometheus metrics and health endpoints, scraped after converting real batches."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request

from convert import outcomes as oc
from convert.metrics import ConvertMetrics, count_incoming, incoming_key_time, instrument
from convert.worker import ConvertWorker, WorkerOptions
from pipeline.metrics import MetricsServer
from pipeline.queues import open_work_queue
from tests.support.convert import gz, make_batch, stub_tools, telemetry_path, v1_payload
from tests.support.metrics import get_json, scrape, value


def good():
    return (telemetry_path(), {"Content-Encoding": "gzip"}, gz(v1_payload()))


def submit(worker: ConvertWorker, key: str, data: bytes) -> None:
    worker.incoming.put(key, data)
    worker.queue.send(json.dumps({"key": key, "records": 0, "bytes": len(data)}))


def test_incoming_age_comes_from_the_key_ingest_gives_each_batch():
    assert incoming_key_time("20240102/030405-host-1-abc.batch") == dt.datetime(
        2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC
    )
    assert incoming_key_time("parked/x-p1.tpr") is None
    assert incoming_key_time("20241399/999999-bad.batch") is None
    now = dt.datetime(2024, 1, 2, 4, 0, tzinfo=dt.UTC)
    keys = ["20240102/030405-a.batch", "20240102/035959-b.batch", "parked/c-p1.tpr", "other"]
    assert count_incoming(iter(keys), now, stale_minutes=30) == (4, 1, 1)


def test_scrape_after_converted_batches_shows_outcomes_claims_and_queue_state(settings):
    worker = ConvertWorker(settings, WorkerOptions(drain=True), tools=stub_tools())
    metrics = ConvertMetrics(settings)
    instrument(worker, metrics)
    server = MetricsServer(metrics.registry, 0, checks=metrics.checks()).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        # one dead letter: a message whose claims all failed
        other = open_work_queue(settings)
        other.send('{"key": "gone"}')
        while (message := other.claim(60)) is not None:
            other.release(message)  # claimed and failed until dead-lettered
        other.close()
        submit(worker, "b/one.tpr", make_batch([good(), good(), ("/bad", {}, b"x")]))
        submit(worker, "b/two.tpr", make_batch([good()]))
        # an old batch nobody announced: the stale gauge is how anyone would notice it
        worker.incoming.put("20000101/000000-host-1-lost.batch", make_batch([good()]))
        assert worker.run() == 0

        samples = scrape(base + "/metrics")
        assert value(samples, "convert_records_total", outcome=oc.PUBLISHED) == 3
        assert value(samples, "convert_records_total", outcome=oc.BAD_PATH) == 1
        assert value(samples, "convert_batches_total", result="done") == 2
        assert value(samples, "convert_batch_seconds_count") == 2
        assert value(samples, "convert_claims_total") == 2
        assert value(samples, "convert_queue_depth") == 0
        assert value(samples, "convert_dead_letters") == 1
        assert value(samples, "convert_incoming_stale_objects") == 1
        assert value(samples, "convert_parked_objects") == 0

        with urllib.request.urlopen(base + "/__lbheartbeat__") as response:
            assert response.status == 200
        assert get_json(base + "/__heartbeat__") == (
            200,
            {"status": "ok", "checks": {"queue": "ok", "incoming_store": "ok"}},
        )
    finally:
        server.stop()
        metrics.close()


def test_parked_records_are_counted_and_their_batch_shown(settings):
    worker = ConvertWorker(settings, WorkerOptions(drain=True), tools=stub_tools(available=False))
    metrics = ConvertMetrics(settings)
    instrument(worker, metrics)
    server = MetricsServer(metrics.registry, 0).start()
    try:
        submit(worker, "b/park.tpr", make_batch([good(), good()]))
        worker.handle(worker.queue.claim(60))
        samples = scrape(f"http://127.0.0.1:{server.port}/metrics")
        assert value(samples, "convert_parked_records_total") == 2
        assert value(samples, "convert_records_total", outcome=oc.PARKED) == 2
        assert value(samples, "convert_parked_objects") == 1
        assert value(samples, "convert_queue_depth") == 1  # the parked batch's delayed message
    finally:
        server.stop()
        metrics.close()
        worker.close()


def test_heartbeat_fails_when_the_incoming_store_is_unusable(settings, tmp_path):
    import dataclasses

    broken = dataclasses.replace(settings, incoming_url=f"file://{tmp_path}/file-not-dir")
    (tmp_path / "file-not-dir").write_text("x")
    metrics = ConvertMetrics(broken)
    server = MetricsServer(metrics.registry, 0, checks=metrics.checks()).start()
    try:
        status, body = get_json(f"http://127.0.0.1:{server.port}/__heartbeat__")
        assert status == 500
        assert body["status"] == "error"
        assert body["checks"]["queue"] == "ok"
        assert body["checks"]["incoming_store"] != "ok"
    finally:
        server.stop()
        metrics.close()


def test_unvalidated_and_parked_records_are_counted_by_reason(settings):
    """/metrics names why records were held back or published unvalidated (the issue's
    "parked and unvalidated records, with reasons, are visible in /metrics")."""
    from convert.batch import BatchReport

    metrics = ConvertMetrics(settings)
    server = MetricsServer(metrics.registry, 0).start()
    try:
        report = BatchReport("b/x.tpr")
        report.outcomes.update({oc.PUBLISHED: 3, oc.PARKED: 1})
        report.unvalidated.update({"revision_unavailable": 2, "missing_revision": 1})
        report.parked_reasons.update({"IncompleteRead": 1})
        metrics.observe_batch(report, 0.5)
        samples = scrape(f"http://127.0.0.1:{server.port}/metrics")
        unvalidated = "convert_unvalidated_records_total"
        assert value(samples, unvalidated, reason="revision_unavailable") == 2
        assert value(samples, unvalidated, reason="missing_revision") == 1
        assert (
            value(samples, "convert_parked_records_by_reason_total", reason="IncompleteRead") == 1
        )
        assert value(samples, "convert_parked_records_total") == 1
    finally:
        server.stop()
        metrics.close()
