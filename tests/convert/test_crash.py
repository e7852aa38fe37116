"""A worker killed with SIGKILL mid-batch: after redelivery the output equals a clean run's.

The worker subprocess (`python -m tests.support.paused_convert`, convert's own main wrapped)
stops at a crash point (after N records, or after N output objects were uploaded) and is
killed there; a fresh `python -m convert --drain` then picks the message up once its lease
runs out.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.queues import open_queue
from pipeline.stores import open_store
from tests.support.convert import REPO, make_batch, read_all, run_convert, seed_histogram_cache
from tests.support.paused_convert import PAUSE_MESSAGE
from tests.support.waiting import wait_for

CHANNELS = ("release", "beta", "aurora", "nightly")


def batch_bytes(shared_fixtures: Path) -> bytes:
    """40 records over four partitions, two bad ones, one duplicate; fixed ids for both runs."""
    body = (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
    ids = [str(uuid.UUID(int=i + 1)) for i in range(40)]
    records = []
    for i, doc_id in enumerate(ids):
        path = (
            f"/submit/telemetry/{doc_id}/idle-daily/Firefox/23.0.1/{CHANNELS[i % 4]}/20130814063812"
        )
        records.append((path, {"Content-Encoding": "gzip"}, body))
    records[7] = (records[7][0], {}, b"{truncated")
    records[8] = (records[8][0], {}, gzip.compress(b"[]", mtime=0))
    records.append(records[0])
    return make_batch(records)


def prepare(root: Path, shared_fixtures: Path, data: bytes) -> dict[str, str]:
    env = {
        "TELEMETRY_DATA_DIR": str(root),
        "TELEMETRY_HISTOGRAM_CACHE": str(seed_histogram_cache(shared_fixtures, root / "cache")),
        "TELEMETRY_HG_BASE_URL": "http://127.0.0.1:9",
        "TELEMETRY_QUEUE_LEASE_SECONDS": "3",
    }
    settings = load_settings(env)
    open_store(settings.incoming_url).put("batches/crash-1.tpr", data)
    open_queue(settings.queue_url).send(
        json.dumps({"key": "batches/crash-1.tpr", "records": 41, "bytes": len(data)})
    )
    return env


def outputs(env: dict[str, str]) -> dict[str, list[bytes]]:
    return read_all(open_store(load_settings(env).published_url))


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, shared_fixtures) -> dict[str, list[bytes]]:
    """The output of an uninterrupted run of the same batch, computed once for both tests."""
    clean_env = prepare(
        tmp_path_factory.mktemp("clean"), shared_fixtures, batch_bytes(shared_fixtures)
    )
    clean = run_convert(clean_env, "--drain")
    assert clean.returncode == 0, clean.stderr[-3000:]
    expected = outputs(clean_env)
    assert len([k for k in expected if not k.startswith("errors/")]) == 4
    return expected


@pytest.mark.parametrize("pause", ["records:20", "uploads:2"])
def test_sigkill_mid_batch_then_redelivery_equals_a_clean_run(
    pause, clean_run, tmp_path, shared_fixtures, data_dir
):
    data = batch_bytes(shared_fixtures)
    expected = clean_run

    env = prepare(tmp_path / "crash", shared_fixtures, data)
    log_path = tmp_path / "crash.log"
    full_env = {**os.environ, **env}
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.support.paused_convert", pause, "--drain"],
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def paused() -> bool:
            assert worker.poll() is None, log_path.read_text()[-3000:]
            return PAUSE_MESSAGE.encode() in log_path.read_bytes()

        wait_for(paused, 120, "the worker to reach the crash point")
        partial = outputs(env)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(30)
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(30)
    if pause.startswith("uploads"):
        assert len(partial) == 2  # killed after a partial upload
    else:
        assert partial == {}
    settings = load_settings(env)
    assert open_store(settings.incoming_url).exists("batches/crash-1.tpr")

    # No --drain-wait: by default a drain waits up to the lease (3 s here) for a message it
    # cannot claim, which is how long the killed worker's lease can still hold.
    again = run_convert(env, "--drain")
    assert again.returncode == 0, again.stderr[-3000:]
    assert outputs(env) == expected
    assert open_queue(settings.queue_url).depth() == 0
    assert not list(open_store(settings.incoming_url).list())
