"""End to end: real fixtures posted to a real ingest server, then `python -m convert --drain`.

Parametrised over the backends: stores on directories or S3 (moto server), queue on SQLite,
SQS (moto server) or Redis (real redis-server). Histograms are checked against a reference
computed here, independently, from the fixture's bucket layouts.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid
from pathlib import Path

import boto3
import pytest

from pipeline.config import load_settings
from pipeline.layout import dimensions_from_key
from pipeline.queues import open_queue
from pipeline.stores import open_store
from tests.support.convert import (
    ESR_REVISION_PATH,
    IngestServer,
    read_all,
    run_convert,
    seed_histogram_cache,
)

STATS = ("sum", "log_sum", "log_sum_squares", "sum_squares_lo", "sum_squares_hi")


def reference_compact(histogram: dict, layout: dict) -> list | None:
    """The compact form by hand: counts in layout order, then the five statistics (-1 missing).

    None when the payload's histogram contradicts the layout (then it must not be published).
    """
    buckets = layout["buckets"]
    values = histogram["values"]
    if any(int(k) not in buckets for k in values):
        return None
    if histogram.get("bucket_count") != layout["bucket_count"]:
        return None
    if list(histogram.get("range", [])) != [layout["min"], layout["max"]]:
        return None
    counts = [values.get(str(b), 0) for b in buckets]
    return counts + [histogram.get(s, -1) for s in STATS]


def backend_env(kind: str, request, tmp_path: Path) -> dict[str, str]:
    if kind == "dir+sqlite":
        return {}
    if kind == "s3+sqs":
        moto = request.getfixturevalue("moto")
        s3 = boto3.client("s3", endpoint_url=moto.endpoint)
        for bucket in ("incoming", "published"):
            s3.create_bucket(Bucket=bucket)
        return {
            "TELEMETRY_INCOMING_URL": "s3://incoming/batches",
            "TELEMETRY_PUBLISHED_URL": "s3://published/data",
            "TELEMETRY_QUEUE_URL": "sqs://convert-e2e",
            "TELEMETRY_S3_ENDPOINT_URL": moto.endpoint,
            "TELEMETRY_SQS_ENDPOINT_URL": moto.endpoint,
        }
    if kind == "dir+redis":
        return {"TELEMETRY_QUEUE_URL": request.getfixturevalue("redis_url")}
    raise AssertionError(kind)


@pytest.fixture
def pipeline_env(request, data_dir, tmp_path, shared_fixtures, monkeypatch):
    env = backend_env(request.param, request, tmp_path)
    cache = seed_histogram_cache(shared_fixtures, tmp_path / "histogram_cache")
    env.update(
        {
            "TELEMETRY_HISTOGRAM_CACHE": str(cache),
            "TELEMETRY_HG_BASE_URL": "http://127.0.0.1:9",
            "TELEMETRY_SPOOL_MAX_AGE_SECONDS": "1",
        }
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.mark.parametrize("pipeline_env", ["dir+sqlite", "s3+sqs", "dir+redis"], indirect=True)
def test_fixtures_posted_to_ingest_are_published_converted(pipeline_env, shared_fixtures, tmp_path):
    idle_body = (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
    idle_path = (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.path").read_text().strip()
    esr_ping = json.loads((shared_fixtures / "firefox/main-ping-esr153.json").read_text())
    esr_id = str(uuid.uuid4())
    idle_ids = [idle_path.split("/")[3]] + [str(uuid.uuid4()) for _ in range(3)]
    server = IngestServer(pipeline_env, tmp_path / "ingest.log").start()
    try:
        for doc_id in idle_ids:
            parts = idle_path.split("/")
            parts[3] = doc_id
            assert server.post("/".join(parts), idle_body, {"Content-Encoding": "gzip"}) == 200
        esr_path = f"/submit/telemetry/{esr_id}/main/Firefox/153.7.0/esr/20261103151912?v=4"
        body = gzip.compress(json.dumps(esr_ping).encode())
        assert server.post(esr_path, body, {"Content-Encoding": "gzip"}) == 200
        today = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    finally:
        server.stop()
    assert server.process.returncode == 0, (tmp_path / "ingest.log").read_text()[-3000:]

    result = run_convert(pipeline_env, "--drain")
    assert result.returncode == 0, result.stderr[-3000:]

    settings = load_settings()
    published = read_all(open_store(settings.published_url))
    incoming = open_store(settings.incoming_url)
    assert not list(incoming.list()), "incoming objects are deleted after conversion"
    assert open_queue(settings.queue_url).depth() == 0
    assert not [k for k in published if k.startswith("errors/")], published.keys()

    by_partition = {}
    for key, lines in published.items():
        dims = dimensions_from_key(key)
        by_partition[
            (
                dims["reason"],
                dims["appName"],
                dims["appUpdateChannel"],
                dims["appVersion"],
                dims["appBuildID"],
                dims["submission_date"],
            )
        ] = lines
    idle_lines = by_partition[
        ("idle_daily", "Firefox", "release", "23.0.1", "20130814063812", today)
    ]
    esr_lines = by_partition[("main", "Firefox", "esr", "153.7.0", "20261103151912", today)]
    assert sorted(line.split(b"\t")[0].decode() for line in idle_lines) == sorted(idle_ids)
    assert [line.split(b"\t")[0].decode() for line in esr_lines] == [esr_id]

    layouts = json.loads((shared_fixtures / "histograms/a55c55edf302.buckets.json").read_text())[
        "histograms"
    ]
    original = json.loads(gzip.decompress(idle_body))
    checked = 0
    for line in idle_lines:
        doc = json.loads(line.split(b"\t", 1)[1])
        assert doc["ver"] == 2
        for name, layout in layouts.items():
            if name not in original["histograms"]:
                continue
            expected = reference_compact(original["histograms"][name], layout)
            if expected is None:
                assert name not in doc["histograms"]
            else:
                assert doc["histograms"][name] == pytest.approx(expected), name
                checked += 1
    assert checked >= 4 * 300  # nearly all of the 325 histograms the reference defines, per copy

    esr_doc = json.loads(esr_lines[0].split(b"\t", 1)[1])
    parent = esr_doc["payload"]["histograms"]
    assert parent and all(isinstance(v, list) for v in parent.values())
    assert ESR_REVISION_PATH.split("/")[-1] in esr_doc["payload"]["info"]["revision"]
