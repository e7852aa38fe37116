"""`python -m convert`: --help, argument errors and several worker processes draining a queue."""

from __future__ import annotations

import json
import uuid

from pipeline.config import load_settings
from pipeline.queues import open_queue
from pipeline.stores import open_store
from tests.support.convert import make_batch, read_all, run_convert, seed_histogram_cache
from tests.support.waiting import wait_for


def test_help_explains_flags_and_shows_effective_settings(data_dir):
    result = run_convert({}, "--help")
    assert result.returncode == 0
    for flag in (
        "--workers",
        "--drain",
        "--drain-wait",
        "--park-delay",
        "--park-max-attempts",
        "--retry-delay",
    ):
        assert flag in result.stdout
    assert f"TELEMETRY_QUEUE_URL=sqlite:///{data_dir}/queue.db" in result.stdout
    assert "Exit status:" in result.stdout
    assert "3  --drain ended with messages still queued" in result.stdout


def test_zero_workers_is_refused(data_dir):
    result = run_convert({}, "--workers", "0", "--drain")
    assert result.returncode == 2 and "--workers" in result.stderr


def test_bad_configuration_is_reported_with_its_setting(data_dir):
    result = run_convert({"TELEMETRY_QUEUE_URL": "kafka://x"}, "--drain")
    assert result.returncode == 2 and "TELEMETRY_QUEUE_URL" in result.stderr


def test_two_worker_processes_drain_every_batch_once(data_dir, tmp_path, shared_fixtures):
    env = {
        "TELEMETRY_HISTOGRAM_CACHE": str(seed_histogram_cache(shared_fixtures, tmp_path / "cache")),
        "TELEMETRY_HG_BASE_URL": "http://127.0.0.1:9",
    }
    settings = load_settings({**env, "TELEMETRY_DATA_DIR": str(data_dir)})
    incoming, queue = open_store(settings.incoming_url), open_queue(settings.queue_url)
    body = (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
    path = "/submit/telemetry/{}/idle-daily/Firefox/23.0.1/release/20130814063812"
    ids = set()
    for n in range(8):
        batch_ids = [str(uuid.uuid4()) for _ in range(5)]
        ids.update(batch_ids)
        data = make_batch((path.format(d), {"Content-Encoding": "gzip"}, body) for d in batch_ids)
        incoming.put(f"multi/{n}.tpr", data)
        queue.send(json.dumps({"key": f"multi/{n}.tpr", "records": 5, "bytes": len(data)}))
    result = run_convert(env, "--drain", "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    published = read_all(open_store(settings.published_url))
    assert len(published) == 8 and not any(k.startswith("errors/") for k in published)
    doc_ids = [line.split(b"\t")[0].decode() for lines in published.values() for line in lines]
    assert sorted(doc_ids) == sorted(ids)
    assert "workers finished with exit codes [0, 0]" in result.stderr
    assert queue.depth() == 0


def test_missing_s3_bucket_is_a_configuration_error(data_dir, moto):
    result = run_convert(
        {"TELEMETRY_PUBLISHED_URL": "s3://no-such-bucket/x"}, "--drain", "--workers", "2"
    )
    assert result.returncode == 2
    assert "TELEMETRY_PUBLISHED_URL" in result.stderr and "no-such-bucket" in result.stderr


def test_service_mode_stops_cleanly_on_sigterm(data_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from tests.support.convert import REPO

    log_path = tmp_path / "convert.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "convert", "--workers", "2", "--poll-seconds", "0.5"],
            cwd=REPO,
            env=dict(os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def both_ready() -> bool:
            assert proc.poll() is None, log_path.read_text()
            return log_path.read_text().count("worker ready") >= 2

        # wait until both children have installed their signal handlers and are polling
        wait_for(both_ready, 60, "both workers to be ready")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "workers finished with exit codes [0, 0]" in log_path.read_text()
