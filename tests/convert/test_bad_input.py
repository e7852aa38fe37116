"""A generated corpus of bad input: every record ends in exactly one place, counts match.

Runs the real worker (real histogram converter, RevisionCache with pre-seeded revisions and a
local stand-in for hg.mozilla.org) over local stores, the SQLite queue and SQLite database.
"""

from __future__ import annotations

import collections
import copy
import gzip
import json
import uuid

import pytest
from sqlalchemy import select

from convert import outcomes as oc
from convert.record import HISTOGRAM_ERRORS_KEY
from convert.worker import EXIT_WORK_LEFT, ConvertWorker, WorkerOptions
from pipeline.config import load_settings
from pipeline.db import make_engine
from pipeline.stats import HourlyStat
from tests.support.convert import (
    error_entries,
    make_batch,
    read_all,
    seed_histogram_cache,
)

DIMS = "idle-daily/Firefox/23.0.1/release/20130814063812"


@pytest.fixture
def worker(data_dir, tmp_path, shared_fixtures, hg, monkeypatch):
    cache = seed_histogram_cache(shared_fixtures, tmp_path / "cache")
    monkeypatch.setenv("TELEMETRY_HISTOGRAM_CACHE", str(cache))
    monkeypatch.setenv("TELEMETRY_HG_BASE_URL", hg.url)
    monkeypatch.setenv("TELEMETRY_MAX_DECOMPRESSED_BYTES", str(4 * 1024 * 1024))
    return ConvertWorker(load_settings(), WorkerOptions(drain=True, park_delay=3600))


def corpus(shared_fixtures):
    """(path, headers, body, expected outcome) for every kind of bad input, plus good ones."""
    body = (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
    payload = json.loads(gzip.decompress(body))
    gzh = {"Content-Encoding": "gzip"}

    def path(doc_id=None):
        return f"/submit/telemetry/{doc_id or uuid.uuid4()}/{DIMS}"

    def variant(change) -> bytes:
        doc = copy.deepcopy(payload)
        change(doc)
        return gzip.compress(json.dumps(doc).encode())

    def bad_histograms(doc):
        doc["histograms"]["CACHE_DISK_SEARCH_2"]["values"]["7777"] = 1  # not a bucket of the layout
        doc["histograms"]["A11Y_INSTANTIATED_FLAG"]["values"]["0"] = -3  # negative count

    dup = str(uuid.uuid4())
    records = [
        (path(dup), gzh, body, oc.PUBLISHED),
        (path(), gzh, body, oc.PUBLISHED),
        (path(), {}, body, oc.PUBLISHED),  # gzip without the header: found by magic
        (path(), gzh, variant(bad_histograms), oc.PUBLISHED),  # published minus 2 histograms
        (path(dup), gzh, body, oc.DUPLICATE),
        (path(), gzh, b"\x1f\x8b\x08\x00" + b"not deflate data" * 10, oc.CORRUPT_GZIP),
        (path(), gzh, body[: len(body) // 2], oc.CORRUPT_GZIP),
        (path(), gzh, gzip.compress(b" " * (6 * 1024 * 1024)), oc.TOO_LARGE),
        (path(), gzh, gzip.compress(gzip.decompress(body)[:5000]), oc.BAD_JSON),
        (path(), {}, b'{"ver": 1, "info": {"appName": "\xff\xfe"}}', oc.BAD_JSON),
        (path(), {}, b"[1, 2, 3]", oc.BAD_PAYLOAD),
        (path(), gzh, variant(lambda d: d.__setitem__("histograms", [1, 2])), oc.INVALID_HISTOGRAM),
        (path(), gzh, variant(lambda d: d["info"].pop("revision")), oc.MISSING_REVISION),
        (
            path(),
            gzh,
            variant(
                lambda d: d["info"].__setitem__(
                    "revision", "http://hg.mozilla.org/releases/mozilla-release/rev/000000000000"
                )
            ),
            oc.MISSING_REVISION,
        ),
        (
            path(),
            gzh,
            variant(
                lambda d: d["info"].__setitem__(
                    "revision", "https://hg.mozilla.org/releases/unavailable/rev/111111111111"
                )
            ),
            oc.PUBLISHED,  # unvalidated, with the layouts it declares; re-validated later
        ),
        ("/submit/telemetry", {}, b"{}", oc.BAD_PATH),
        ("/elsewhere/x", {}, b"{}", oc.BAD_PATH),
    ]
    return records, dup


def test_every_bad_record_is_accounted_for_once(worker, shared_fixtures):
    records, dup = corpus(shared_fixtures)
    first, second = records[:9], records[9:]
    repeat = (
        f"/submit/telemetry/{dup}/{DIMS}",
        {"Content-Encoding": "gzip"},
        records[0][2],
        oc.DUPLICATE,
    )
    second = [*second, repeat]  # a duplicate across batches as well
    for key, part in (("in/first.tpr", first), ("in/second.tpr", second)):
        data = make_batch((p, h, b) for p, h, b, _ in part)
        worker.incoming.put(key, data)
        worker.queue.send(json.dumps({"key": key, "records": len(part), "bytes": len(data)}))
    # The stash of the unvalidated record (due in an hour) is still queued: the drain says so.
    assert worker.run() == EXIT_WORK_LEFT

    expected = collections.Counter(outcome for *_, outcome in first + second)
    everything = read_all(worker.published)
    published_lines = [
        line for key, lines in everything.items() if not key.startswith("errors/") for line in lines
    ]
    errors = error_entries(worker.published)
    waiting = [i.key for i in worker.incoming.list()]
    found = collections.Counter(e["reason"] for e in errors)
    found[oc.PUBLISHED] = len(published_lines)
    assert found == expected
    assert waiting == ["unvalidated/in_second.tpr"]  # kept for its re-validation
    assert len(published_lines) + len(errors) == len(first) + len(second)
    unvalidated = [line for line in published_lines if b'"histogramDefinitions"' in line]
    assert len(unvalidated) == 1

    # errors keep the raw record, except duplicates (metadata only)
    for entry in errors:
        assert ("body" in entry) == (entry["reason"] != oc.DUPLICATE), entry["reason"]
    lost = [json.loads(line.split(b"\t", 1)[1]) for line in published_lines]
    lost = [
        doc[HISTOGRAM_ERRORS_KEY]
        for doc in lost
        if HISTOGRAM_ERRORS_KEY in doc and "histogramDefinitions" not in doc
    ]
    assert len(lost) == 4  # every copy lists the two histograms its revision does not define
    assert sorted(name for doc in lost for name, _ in doc["invalid"]) == [
        "A11Y_INSTANTIATED_FLAG",
        "CACHE_DISK_SEARCH_2",
    ]

    with make_engine(worker.settings.database_url).connect() as conn:
        rows = conn.execute(select(HourlyStat.source, HourlyStat.outcome, HourlyStat.count)).all()
    stats = collections.Counter()
    for source, outcome, count in rows:
        stats[(source, outcome)] += count
    assert {o: stats[("convert", o)] for o in expected} == dict(expected)
    assert stats[("convert_hist", oc.INVALID_HISTOGRAM)] == 1
    assert stats[("convert_hist", "unvalidated_revision_unavailable")] == 1
    assert worker.queue.depth() == 1  # the stash's re-validation, due in an hour
