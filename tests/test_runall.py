"""The one command (`make run` = `python -m pipeline.runall`): start, publish a submission, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import lz4.frame
import pytest

from tests.servers import free_port, wait_for_port

pytestmark = pytest.mark.slow


def published_records(published: Path) -> dict[str, dict]:
    records = {}
    for path in published.rglob("*.lz4"):
        if path.relative_to(published).parts[0] in ("errors", "namespaces"):
            continue
        for line in lz4.frame.decompress(path.read_bytes()).decode().splitlines():
            doc_id, payload = line.split("\t", 1)
            records[doc_id] = json.loads(payload)
    return records


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_one_command_runs_the_pipeline_and_stops_cleanly(tmp_path, shared_fixtures):
    data_dir = tmp_path / "var"
    ingest_port, dashboard_port = free_port(), free_port()
    env = dict(
        os.environ,
        TELEMETRY_DATA_DIR=str(data_dir),
        TELEMETRY_SHARED_FIXTURES=str(shared_fixtures),
        TELEMETRY_SPOOL_MAX_AGE_SECONDS="1",
    )
    log_path = tmp_path / "runall.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.runall",
                "--ingest-port",
                str(ingest_port),
                "--dashboard-port",
                str(dashboard_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        wait_for_port(ingest_port, 90)
        wait_for_port(dashboard_port, 90)
        # The demo submissions (the real Firefox 23 idle-daily one among them) get published.
        published = data_dir / "published"
        records = wait_for(
            lambda: published_records(published) if published.exists() else None,
            120,
            "demo records",
        )
        fixture_id = (
            (shared_fixtures / "payloads" / "idle-daily-firefox-23.0.1.path")
            .read_text()
            .split("/")[3]
        )
        wait_for(lambda: fixture_id in published_records(published), 60, "the fixture record")

        # A submission of our own goes all the way through too.
        doc_id = str(uuid.uuid4())
        body = (shared_fixtures / "payloads" / "idle-daily-firefox-23.0.1.json.gz").read_bytes()
        request = urllib.request.Request(
            f"http://127.0.0.1:{ingest_port}/submit/telemetry/{doc_id}/idle-daily/Firefox/23.0.1/release/20130814063812",
            data=body,
            method="POST",
            headers={"Content-Encoding": "gzip"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        records = wait_for(
            lambda: (r := published_records(published)).get(doc_id) and r, 120, "our record"
        )
        assert records[doc_id]["ver"] == 2
        assert (
            "histogramErrors" not in records[doc_id]
            or not records[doc_id]["histogramErrors"]["invalid"]
        )

        with urllib.request.urlopen(
            f"http://127.0.0.1:{dashboard_port}/login", timeout=30
        ) as response:
            assert response.status == 200

        # The example job was scheduled and run once over the published demo data.
        summary_path = data_dir / "public" / "published-summary" / "data" / "summary.json"
        wait_for(summary_path.exists, 120, "the example job's published summary")
        assert json.loads(summary_path.read_text())["objects"] >= 1
        with urllib.request.urlopen(
            f"http://127.0.0.1:{dashboard_port}/public/published-summary/data/", timeout=30
        ) as response:
            assert "summary.json" in response.read().decode()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            print(log_path.read_text()[-8000:])  # shown by pytest when the test fails
    output = log_path.read_text()
    assert code == 0, output[-4000:]
    assert "exited unexpectedly" not in output


def test_one_command_keeps_existing_data(tmp_path):
    data_dir = tmp_path / "var"
    (data_dir / "published" / "keep").mkdir(parents=True)
    marker = data_dir / "published" / "keep" / "me.txt"
    marker.write_text("old data")
    ingest_port, dashboard_port = free_port(), free_port()
    env = dict(os.environ, TELEMETRY_DATA_DIR=str(data_dir))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.runall",
            "--no-demo",
            "--ingest-port",
            str(ingest_port),
            "--dashboard-port",
            str(dashboard_port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        wait_for_port(ingest_port, 90)
        wait_for_port(dashboard_port, 90)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code == 0
    assert marker.read_text() == "old data"
