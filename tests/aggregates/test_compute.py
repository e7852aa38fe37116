"""The aggregates equal a direct computation over generated published data (through the real
MapReduce engine), keyed and per-process histograms included; redoing a day replaces it."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from aggregates import jobrun
from aggregates.compute import aggregate_days
from aggregates.dayfile import decode_day, iter_rows
from aggregates.readcache import AggregateCache
from histograms.buckets import exponential_buckets
from pipeline.config import load_settings
from pipeline.stores import open_store
from pipeline.system_jobs import write_rerun_request
from tests.support.aggregates_data import (
    HISTOGRAMS_JSON,
    expected_rows,
    publish,
    publish_job_output,
    record_strategy,
    seed,
)


def as_comparable(days) -> dict[tuple, list]:
    got = {}
    for day in days.values():
        for key, vector in day.rows.items():
            channel, version, build_id, reason, _app, os_name, _osv, _arch, metric, layout = key
            assert day.layouts[layout].buckets  # every row has its bounds
            got[(day.date, channel, version, build_id, reason, os_name, metric)] = [
                vector[0],
                vector[1],
                vector[2:],
            ]
    return got


@hyp_settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(record_strategy, min_size=1, max_size=25))
def test_aggregates_equal_a_direct_computation(records, monkeypatch):
    with tempfile.TemporaryDirectory() as tmp:
        monkeypatch.setenv("TELEMETRY_DATA_DIR", tmp)
        settings = load_settings()
        seed(settings.histogram_cache)
        publish(open_store(settings.published_url), records)
        days = aggregate_days(settings, ["20261201", "20261202"], mappers=2)
        assert as_comparable(days) == expected_rows(records)
        unknown = sum(1 for r in records if not r["v4"])
        skipped = sum(
            d.skipped.get("not in its revision's Histograms.json", 0) for d in days.values()
        )
        assert skipped == unknown  # NOT_DEFINED is left out and counted, not guessed


def test_layouts_kinds_and_descriptions_come_from_the_revision(settings):
    seed(settings.histogram_cache)
    record = {
        "v4": True, "date": "20261201", "channel": "release", "version": "24.0",
        "build_id": "20261101000000", "os": "Linux", "gc": [1] * 10, "flag": [0, 2, 0],
        "keyed": {"a": [0, 1, 0, 0, 0]}, "content_gc": [0] * 9 + [3], "uptime": 5,
    }  # fmt: skip
    publish(open_store(settings.published_url), [record])
    day = aggregate_days(settings, ["20261201"], mappers=1)["20261201"]
    rows = {key[8]: day.layouts[key[9]] for key in day.rows}
    assert rows["GC_MS"].kind == "exponential"
    assert rows["GC_MS"].buckets == exponential_buckets(1, 10000, 10)
    assert rows["FLAG_ON"].kind == "boolean" and rows["FLAG_ON"].buckets == (0, 1, 2)
    assert rows["PER_KEY[a]"].kind == "linear" and rows["PER_KEY[a]"].buckets == (0, 1, 4, 7, 10)
    assert rows["content/GC_MS"] == rows["GC_MS"]
    assert day.descriptions["PER_KEY[a]"] == HISTOGRAMS_JSON["PER_KEY"]["description"]
    assert day.descriptions["content/GC_MS"] == HISTOGRAMS_JSON["GC_MS"]["description"]


def _totals(document) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in iter_rows(document):
        out[row["metric"]] = out.get(row["metric"], 0) + row["submissions"]
    return out


def test_redoing_a_day_replaces_it(settings, tmp_path):
    seed(settings.histogram_cache)
    published, public = open_store(settings.published_url), open_store(settings.public_url)
    base = {
        "v4": False, "date": "20261201", "channel": "release", "version": "23.0.1",
        "build_id": "20261101000000", "os": "WINNT", "gc": [1] * 10, "flag": [0, 1, 0],
        "keyed": {}, "content_gc": None, "uptime": 10,
    }  # fmt: skip
    other_day = dict(base, date="20261202")
    publish(published, [base, base, other_day], "first")
    cache = AggregateCache(public, tmp_path / "cache.db", "agg", min_sync_seconds=0)
    now = dt.datetime(2026, 12, 3, 1, 0, tzinfo=dt.UTC)

    out = tmp_path / "run1"
    assert jobrun.run(settings, out, "agg", now=now, mappers=1) == ["20261201", "20261202"]
    assert _totals(decode_day((out / "days/20261201.json.gz").read_bytes()))["GC_MS"] == 2
    publish_job_output(out, public, "agg")
    assert cache.sync() == ["20261201", "20261202"]
    assert cache.histogram("GC_MS", "release", ["23.0.1"])["submissions"] == 3

    # nothing changed: nothing to do
    assert jobrun.run(settings, tmp_path / "run2", "agg", now=now, mappers=1) == []

    # a new batch for the first day: only that day is redone, as a whole
    publish(published, [base], "second")
    out = tmp_path / "run3"
    later = now + dt.timedelta(hours=1)
    assert jobrun.run(settings, out, "agg", now=later, mappers=1) == ["20261201"]
    assert _totals(decode_day((out / "days/20261201.json.gz").read_bytes()))["GC_MS"] == 3
    publish_job_output(out, public, "agg")
    assert cache.sync() == ["20261201"]
    histogram = cache.histogram("GC_MS", "release", ["23.0.1"])
    assert histogram["submissions"] == 4  # 3 + 1, not 2 + 3 + 1
    assert histogram["counts"] == [4] * 10

    # a rerun request newer than the day's aggregates recomputes it even without new data
    write_rerun_request(
        public, "2026-12-02", "2026-12-02", later + dt.timedelta(minutes=1), job_name="agg"
    )
    out = tmp_path / "run4"
    assert jobrun.run(settings, out, "agg", now=later + dt.timedelta(minutes=2), mappers=1) == [
        "20261202"
    ]
    publish_job_output(out, public, "agg")
    assert cache.sync() == ["20261202"]
    assert cache.histogram("GC_MS", "release", ["23.0.1"])["submissions"] == 4
    shutil.rmtree(out)
    # ... and only once
    assert jobrun.run(settings, out, "agg", now=later + dt.timedelta(minutes=3), mappers=1) == []


def test_a_filled_cache_refreshes_in_the_background(settings, tmp_path):
    """Only the very first query waits for loading; later ones never wait for a new day."""
    seed(settings.histogram_cache)
    published, public = open_store(settings.published_url), open_store(settings.public_url)
    base = {
        "v4": False, "date": "20261201", "channel": "release", "version": "23.0.1",
        "build_id": "20261101000000", "os": "WINNT", "gc": [1] * 10, "flag": [0, 1, 0],
        "keyed": {}, "content_gc": None, "uptime": 10,
    }  # fmt: skip
    publish(published, [base], "first")
    jobrun.run(settings, tmp_path / "run1", "agg", mappers=1)
    publish_job_output(tmp_path / "run1", public, "agg")
    cache = AggregateCache(public, tmp_path / "cache.db", "agg", min_sync_seconds=1e-9)
    assert cache.histogram("GC_MS", "release", ["23.0.1"])["submissions"] == 1  # synchronous

    publish(published, [dict(base, date="20261202")], "second")
    jobrun.run(settings, tmp_path / "run2", "agg", mappers=1)
    publish_job_output(tmp_path / "run2", public, "agg")
    cache.refresh()
    refresher = cache._refresher
    assert refresher is not None  # the load went to a thread
    refresher.join(30)
    assert cache.histogram("GC_MS", "release", ["23.0.1"])["submissions"] == 2


def test_the_dask_engine_gives_the_same_aggregates(settings):
    """The same job script on a real dask.distributed LocalCluster (worker processes)."""
    pytest.importorskip("dask.distributed")
    seed(settings.histogram_cache)
    record = {
        "v4": True, "date": "20261201", "channel": "release", "version": "24.0",
        "build_id": "20261101000000", "os": "Linux", "gc": list(range(10)), "flag": [0, 2, 1],
        "keyed": {"a": [0, 1, 0, 0, 0]}, "content_gc": [0] * 9 + [3], "uptime": 5,
    }  # fmt: skip
    records = [record, dict(record, os="WINNT", v4=False), dict(record, uptime=700)]
    publish(open_store(settings.published_url), records)
    local = aggregate_days(settings, ["20261201"], mappers=1)
    on_dask = aggregate_days(settings, ["20261201"], engine="dask", mappers=2)
    assert as_comparable(on_dask) == as_comparable(local) == expected_rows(records)


def test_two_dashboard_processes_load_a_day_once(settings, tmp_path):
    """gunicorn's workers share the cache file: while one loads a day, another waits and
    then has nothing left to load (it used to load every day again)."""
    import threading

    seed(settings.histogram_cache)
    published, public = open_store(settings.published_url), open_store(settings.public_url)
    record = {
        "v4": False, "date": "20261201", "channel": "release", "version": "23.0.1",
        "build_id": "20261101000000", "os": "WINNT", "gc": [1] * 10, "flag": [0, 1, 0],
        "keyed": {}, "content_gc": None, "uptime": 10,
    }  # fmt: skip
    publish(published, [record], "first")
    jobrun.run(settings, tmp_path / "run", "agg", mappers=1)
    publish_job_output(tmp_path / "run", public, "agg")
    loading, second_done = threading.Event(), threading.Event()

    class Staged(AggregateCache):
        def _load_day(self, document):
            loading.set()
            second_done.wait(5)  # with the lock the second never gets here while we load
            super()._load_day(document)

    first = Staged(public, tmp_path / "cache.db", "agg", min_sync_seconds=0)
    second = AggregateCache(public, tmp_path / "cache.db", "agg", min_sync_seconds=0)
    loaded = {}
    thread = threading.Thread(target=lambda: loaded.setdefault("first", first.sync(force=True)))
    thread.start()
    assert loading.wait(30)
    loaded["second"] = second.sync(force=True)
    second_done.set()
    thread.join(30)
    assert loaded == {"first": ["20261201"], "second": []}
