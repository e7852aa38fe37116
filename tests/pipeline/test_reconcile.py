"""The reconciler: incoming batches that no queue message names are announced again.

The end-to-end case is the one measured on a chaos soak: Redis loses its data (FLUSHALL on
the real test server) while batches wait, `convert --drain` then finds nothing to do, and the
acknowledged records stay in the incoming store for good, unless the reconciler runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from health.alerts import list_alerts
from health.stale_incoming import KIND_STALE_INCOMING
from pipeline.config import load_settings
from pipeline.db import make_engine
from pipeline.queues import open_queue, open_work_queue
from pipeline.reconcile import Reconciler, find_stranded, keys_named
from pipeline.stores import open_store
from pipeline.stores.base import ObjectInfo
from tests.support.convert import IngestServer, read_all, run_convert

HOUR = 3600.0


def age(directory: Path, seconds: float) -> None:
    """Make every file under `directory` look `seconds` old (the stores list the mtime)."""
    then = time.time() - seconds
    for path in directory.rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def payload(doc_id: str) -> bytes:
    info = {
        "reason": "idle-daily",
        "appName": "Firefox",
        "appVersion": "115.0",
        "appUpdateChannel": "release",
        "appBuildID": "20230101000000",
    }
    return json.dumps({"ver": 1, "info": info, "docId": doc_id}).encode()


def published_doc_ids(settings) -> list[str]:
    lines = [
        line
        for key, found in read_all(open_store(settings.published_url)).items()
        if not key.startswith("errors/")
        for line in found
    ]
    return sorted(line.split(b"\t", 1)[0].decode() for line in lines)


def run_watcher_once(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "health", "--once"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_batches_redis_forgot_are_converted_after_the_watchers_reconcile_pass(
    data_dir, redis_server, redis_url, tmp_path
):
    env = {"TELEMETRY_DATA_DIR": str(data_dir), "TELEMETRY_QUEUE_URL": redis_url}
    acknowledged = []
    for round_ in range(2):  # two ingest runs: two batches, each announced on shutdown
        server = IngestServer(env, tmp_path / f"ingest-{round_}.log").start()
        try:
            for _ in range(15):
                doc_id = str(uuid.uuid4())
                if server.post(f"/submit/telemetry/{doc_id}", payload(doc_id)) == 200:
                    acknowledged.append(doc_id)
        finally:
            server.stop()
    settings = load_settings(env)
    assert len(acknowledged) == 30
    assert len(list(open_store(settings.incoming_url).list())) == 2
    assert open_queue(settings.queue_url).depth() == 2

    redis_server.flush()  # the queue loses its data while both batches wait

    forgotten = run_convert(env, "--drain")
    assert forgotten.returncode == 0, forgotten.stderr[-2000:]
    assert published_doc_ids(settings) == []  # what happened before the reconciler existed

    age(data_dir / "incoming", 2 * HOUR)  # the batches have waited past lease + margin
    watcher = run_watcher_once(env)
    assert watcher.returncode == 0, watcher.stderr[-2000:]
    assert "2 re-announced" in watcher.stderr
    engine = make_engine(settings.database_url)
    [alert] = list_alerts(engine, dt.datetime(2000, 1, 1))
    assert alert.kind == KIND_STALE_INCOMING and alert.ongoing and alert.seen == 2
    assert "older than 60 minutes" in alert.details

    drained = run_convert(env, "--drain")
    assert drained.returncode == 0, drained.stderr[-2000:]
    assert published_doc_ids(settings) == sorted(acknowledged)  # 0 missing, 0 duplicated
    assert not list(open_store(settings.incoming_url).list())
    assert open_queue(settings.queue_url).depth() == 0

    recovered = run_watcher_once(env)
    assert recovered.returncode == 0, recovered.stderr[-2000:]
    [alert] = list_alerts(engine, dt.datetime(2000, 1, 1))
    assert not alert.ongoing
    engine.dispose()


# -- one pass, per situation -----------------------------------------------------------------


@pytest.fixture
def reconciler(settings):
    made = Reconciler.open(settings)
    yield made
    made.close()


def put_batch(reconciler, key: str, waited: float, announce: bool) -> None:
    reconciler.incoming.put(key, b"TPR1")
    path = Path(reconciler.incoming.root) / key  # a directory store: its mtime is the time
    then = time.time() - waited
    os.utime(path, (then, then))
    if announce:
        reconciler.queue.send(json.dumps({"key": key, "records": 1, "bytes": 4}))


def test_only_old_batches_no_message_names_are_announced_again(reconciler, settings):
    put_batch(reconciler, "20260101/000000-a.batch", HOUR, announce=True)  # waiting, named
    put_batch(reconciler, "20260101/000001-b.batch", HOUR, announce=False)  # stranded
    put_batch(reconciler, "20260101/000002-c.batch", 1, announce=False)  # ingest announcing now
    held = reconciler.queue.claim()  # a worker holds a's message: still named
    assert json.loads(held.body)["key"].endswith("-a.batch")

    dry = reconciler.run_once(dry_run=True)
    assert [info.key for info in dry.stranded] == ["20260101/000001-b.batch"]
    assert dry.sent == 0 and reconciler.queue.depth() == 1

    report = reconciler.run_once()
    assert report.objects == 3 and report.sent == 1
    assert report.min_age == settings.queue_lease_seconds + settings.reconcile_margin_seconds
    message = reconciler.queue.claim()
    assert json.loads(message.body) == {
        "key": "20260101/000001-b.batch",
        "bytes": 4,
        "reannounced": True,
    }
    assert reconciler.run_once().sent == 0  # now named by the message just sent


def test_a_dead_lettered_batch_is_named_and_left_to_the_operator(reconciler):
    queue = open_work_queue(load_settings(queue_max_attempts=1))
    put_batch(reconciler, "20260101/dead.batch", HOUR, announce=True)
    first = queue.claim(lease_seconds=0.05)
    while time.time() <= first.lease_deadline + 0.05:
        time.sleep(0.05)
    assert queue.claim() is None and queue.dead_letter_count() == 1
    assert reconciler.run_once().sent == 0
    queue.close()


def test_older_than_overrides_the_age(reconciler):
    put_batch(reconciler, "20260101/young.batch", 1, announce=False)
    assert reconciler.run_once().sent == 0
    assert reconciler.run_once(older_than=0).sent == 1


def test_on_sqs_only_batches_older_than_the_retention_count(data_dir, moto):
    """SQS cannot list its messages: a batch counts as stranded once no message can still
    exist for it (older than the retention period plus the margin), and only once per
    retention period, so a long backlog does not get a duplicate on every pass."""
    settings = load_settings(queue_url=f"sqs://reconcile-{uuid.uuid4().hex[:8]}")
    reconciler = Reconciler.open(settings)
    try:
        put_batch(reconciler, "20260101/recent.batch", HOUR, announce=False)
        put_batch(reconciler, "20260101/ancient.batch", 5 * 24 * HOUR, announce=False)
        report = reconciler.run_once()
        assert [info.key for info in report.stranded] == ["20260101/ancient.batch"]
        assert report.min_age == 345600 + settings.reconcile_margin_seconds
        assert reconciler.run_once().sent == 0  # its new message lives for the retention
        message = reconciler.queue.claim(wait_seconds=1)
        assert json.loads(message.body)["key"] == "20260101/ancient.batch"
        assert reconciler.run_once(older_than=0).sent == 2  # after a purge: everything
    finally:
        reconciler.close()


def test_keys_named_ignores_bodies_that_name_no_batch():
    bodies = ['{"key": "a"}', "not json", "[1]", '{"key": 3}', '{"key": "b", "park_attempt": 2}']
    assert keys_named(bodies) == {"a", "b"}


def test_find_stranded_counts_an_object_without_a_time_as_old():
    objects = [ObjectInfo("x", 1), ObjectInfo("y", 1, modified=1000.0)]
    assert find_stranded(objects, set(), now=1010.0, min_age=60) == [ObjectInfo("x", 1)]


def test_reconcile_cli_lists_and_announces(data_dir, settings):
    store = open_store(settings.incoming_url)
    store.put("20260101/lost.batch", b"TPR1")
    age(data_dir / "incoming", HOUR)
    env = {**os.environ, "TELEMETRY_DATA_DIR": str(data_dir)}
    dry = subprocess.run(
        [sys.executable, "-m", "pipeline", "reconcile", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0, dry.stderr
    assert "stranded\t20260101/lost.batch\t4 bytes" in dry.stdout
    assert open_queue(settings.queue_url).depth() == 0
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "reconcile", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "objects": 1,
        "stranded": ["20260101/lost.batch"],
        "reannounced": 1,
    }
    assert open_queue(settings.queue_url).depth() == 1


def test_the_watcher_leaves_batches_alone_with_the_reconciler_off(data_dir, settings):
    open_store(settings.incoming_url).put("20260101/lost.batch", b"TPR1")
    age(data_dir / "incoming", 2 * HOUR)
    env = {"TELEMETRY_DATA_DIR": str(data_dir), "TELEMETRY_RECONCILE_INTERVAL_SECONDS": "0"}
    watcher = run_watcher_once(env)
    assert watcher.returncode == 0, watcher.stderr[-2000:]
    assert open_queue(settings.queue_url).depth() == 0
    assert "1 unconverted incoming batches" in watcher.stderr  # the alert still sees it
