"""One poisonous record never sinks its batch: it goes to errors/, the good records publish.

A lone surrogate escape ("\\ud800") is accepted by the JSON parser (the ujson fallback) but
cannot be written as UTF-8; an unexpected exception inside conversion is a bug. Either way the
record must end in errors/ with its raw bytes and a reason, and the rest of the batch must be
published, acknowledged and deleted like any other batch (not retried into a dead letter).

Runs the real worker (real histogram converter, pre-seeded RevisionCache) over local stores,
the SQLite queue and SQLite database.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import gzip
import json
import logging
import uuid

import pytest
from sqlalchemy import select

import convert.record
from convert import outcomes as oc
from convert.worker import ConvertWorker, WorkerOptions
from pipeline.config import load_settings
from pipeline.db import make_engine
from pipeline.stats import HourlyStat
from tests.support.convert import error_entries, make_batch, read_all, seed_histogram_cache

DIMS = "idle-daily/Firefox/23.0.1/release/20130814063812"
GZIP = {"Content-Encoding": "gzip"}


@pytest.fixture
def worker(data_dir, tmp_path, shared_fixtures, monkeypatch):
    cache = seed_histogram_cache(shared_fixtures, tmp_path / "cache")
    monkeypatch.setenv("TELEMETRY_HISTOGRAM_CACHE", str(cache))
    monkeypatch.setenv("TELEMETRY_HG_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TELEMETRY_QUEUE_MAX_ATTEMPTS", "2")
    return ConvertWorker(load_settings(), WorkerOptions(drain=True, retry_delay=0))


@pytest.fixture
def body(shared_fixtures) -> bytes:
    return (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()


def path(doc_id: str | None = None) -> str:
    return f"/submit/telemetry/{doc_id or uuid.uuid4()}/{DIMS}"


def with_lone_surrogate(body: bytes, escape: str) -> bytes:
    """The real payload with a lone surrogate escape in `info.locale` (still gzip)."""
    text = gzip.decompress(body).decode("utf-8")
    assert '"locale":' in text
    return gzip.compress(text.replace('"locale":', f'"locale":"{escape}","x_locale":', 1).encode())


def run_batch(worker: ConvertWorker, key: str, records: list[tuple[str, dict, bytes]]) -> None:
    data = make_batch(records)
    worker.incoming.put(key, data)
    worker.queue.send(json.dumps({"key": key, "records": len(records), "bytes": len(data)}))
    assert worker.run() == 0


def published_lines(worker: ConvertWorker) -> list[bytes]:
    everything = read_all(worker.published)
    return [
        line for key, lines in everything.items() if not key.startswith("errors/") for line in lines
    ]


def assert_batch_done(worker: ConvertWorker, key: str) -> None:
    assert worker.queue.depth() == 0
    assert worker.queue.dead_letters() == []
    assert not worker.incoming.exists(key)


def convert_stats(worker: ConvertWorker) -> collections.Counter:
    with make_engine(worker.settings.database_url).connect() as conn:
        rows = conn.execute(
            select(HourlyStat.outcome, HourlyStat.count).where(HourlyStat.source == "convert")
        ).all()
    found = collections.Counter()
    for outcome, count in rows:
        found[outcome] += count
    return found


def test_lone_surrogates_go_to_errors_and_the_good_records_are_published(worker, body):
    good = [(path(), GZIP, body) for _ in range(3)]
    plain = (path(), {}, b'{"ver":1,"info":{"appName":"\\ud800"}}')  # the audit's probe
    gzipped = (path(), GZIP, with_lone_surrogate(body, "\\udc00"))  # through the real converter
    records = [good[0], plain, good[1], gzipped, good[2]]
    run_batch(worker, "b/poison.tpr", records)

    published = published_lines(worker)
    assert sorted(line.split(b"\t", 1)[0].decode() for line in published) == sorted(
        p.split("/")[3] for p, _, _ in good
    )
    errors = error_entries(worker.published)
    assert sorted(e["path"] for e in errors) == sorted([plain[0], gzipped[0]])
    for entry in errors:
        assert entry["reason"] == oc.BAD_JSON
        assert "surrogate" in entry["details"]
        raw = {p: b for p, _, b in records}[entry["path"]]
        assert base64.b64decode(entry["body"]) == raw  # the raw bytes are kept
    assert_batch_done(worker, "b/poison.tpr")
    assert convert_stats(worker) == {oc.PUBLISHED: 3, oc.BAD_JSON: 2}


def test_an_unexpected_exception_in_conversion_is_one_error_record(
    worker, body, monkeypatch, caplog
):
    poisoned = {str(uuid.uuid4()), str(uuid.uuid4())}
    real = convert.record.raw_dimensions

    def raw_dimensions(sub, payload, received_ms):
        if sub.doc_id in poisoned and payload is not None:
            raise RuntimeError("converter bug for this record")
        return real(sub, payload, received_ms)

    monkeypatch.setattr(convert.record, "raw_dimensions", raw_dimensions)
    first, second = sorted(poisoned)
    records = [(path(), GZIP, body), (path(first), GZIP, body), (path(), GZIP, body)]
    records += [(path(second), GZIP, body), (path(), GZIP, body)]
    with caplog.at_level(logging.INFO):
        run_batch(worker, "b/bug.tpr", records)

    assert len(published_lines(worker)) == 3
    errors = error_entries(worker.published)
    assert sorted(e["docId"] for e in errors) == [first, second]
    for entry in errors:
        assert entry["reason"] == oc.BAD_PAYLOAD
        assert "RuntimeError" in entry["details"]
        assert "converter bug for this record" in entry["details"]
        assert base64.b64decode(entry["body"]) == body
    assert_batch_done(worker, "b/bug.tpr")
    assert convert_stats(worker) == {oc.PUBLISHED: 3, oc.BAD_PAYLOAD: 2}
    # a bug: logged with its traceback, once for the same bug site, and the batch went on
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1
    assert "converter bug for this record" in tracebacks[0].getMessage() + str(
        tracebacks[0].exc_info[1]
    )
    assert sum(second in r.getMessage() for r in caplog.records) == 1
    assert not [r for r in caplog.records if "failed; retry" in r.getMessage()]


def test_an_unexpected_exception_while_serialising_is_one_error_record(worker, body):
    tools = worker.processor.converter.tools
    marker = "serialise-me-not"
    real_dumps = tools.dumps

    def dumps(obj):
        if isinstance(obj, dict) and obj.get("info", {}).get("x_marker") == marker:
            raise OverflowError("cannot serialise this one")
        return real_dumps(obj)

    worker.processor.converter.tools = dataclasses.replace(tools, dumps=dumps)
    text = gzip.decompress(body).decode("utf-8")
    marked = gzip.compress(
        text.replace('"locale":', f'"x_marker":"{marker}","locale":', 1).encode()
    )
    bad = (path(), GZIP, marked)
    run_batch(worker, "b/dump.tpr", [(path(), GZIP, body), bad, (path(), GZIP, body)])

    assert len(published_lines(worker)) == 2
    errors = error_entries(worker.published)
    assert [(e["path"], e["reason"]) for e in errors] == [(bad[0], oc.BAD_PAYLOAD)]
    assert "OverflowError" in errors[0]["details"]
    assert base64.b64decode(errors[0]["body"]) == marked
    assert_batch_done(worker, "b/dump.tpr")


def test_an_unexpected_failure_fetching_definitions_parks_the_records(
    data_dir, tmp_path, shared_fixtures, monkeypatch, body
):
    """The record is not at fault when the revision fetch breaks in an unforeseen way: it
    waits for a retry (parked), it does not become a permanent error."""
    from convert.histogram_tools import real_tools
    from convert.worker import EXIT_WORK_LEFT

    cache = seed_histogram_cache(shared_fixtures, tmp_path / "cache")
    monkeypatch.setenv("TELEMETRY_HISTOGRAM_CACHE", str(cache))
    settings = load_settings()

    def broken_definitions(revision):
        raise RuntimeError("the fetch broke in a new way")

    tools = dataclasses.replace(real_tools(settings), definitions=broken_definitions)
    worker = ConvertWorker(settings, WorkerOptions(drain=True, retry_delay=0), tools=tools)
    records = [(path(), GZIP, body) for _ in range(2)]
    data = make_batch(records)
    worker.incoming.put("b/fetch.tpr", data)
    worker.queue.send(json.dumps({"key": "b/fetch.tpr", "records": 2, "bytes": len(data)}))
    assert worker.run() == EXIT_WORK_LEFT  # the parked batch waits, delayed, on the queue
    assert error_entries(worker.published) == []
    assert published_lines(worker) == []
    assert convert_stats(worker) == {oc.PARKED: 2}
