"""`python -m scheduler` end to end, by subprocess: add, list, run-now --wait, history, the service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.db import init_db, make_engine, session_factory
from scheduler.jobs import service_alive

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TELEMETRY_SCHEDULER_SYNC_SECONDS": "0.5"},
    )


@pytest.fixture
def example_tarball(tmp_path, data_dir) -> Path:
    out = tmp_path / "summary.tar.gz"
    subprocess.run(
        [sys.executable, "-m", "scheduler.examples.build", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return out


def add_example(tarball: Path, name: str = "published-summary") -> subprocess.CompletedProcess:
    return cli(
        "add",
        "--name",
        name,
        "--tarball",
        str(tarball),
        "--command",
        "python summarise.py",
        "--output-dir",
        "output",
        "--frequency",
        "weekly",
        "--day-of-week",
        "mon",
        "--hour",
        "6",
        "--owner",
        "ana@example.com",
        "--timeout-minutes",
        "5",
    )


def test_add_list_run_now_wait_and_history(example_tarball, data_dir):
    added = add_example(example_tarball)
    assert added.returncode == 0, added.stderr
    assert "job published-summary created" in added.stdout

    listed = cli("list")
    assert listed.returncode == 0
    assert "published-summary" in listed.stdout and "weekly mon 06:00" in listed.stdout

    ran = cli("run-now", "published-summary", "--wait")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "executing the run in this process" in ran.stdout
    assert "published: published-summary/data/summary.json" in ran.stdout
    summary = json.loads(
        (data_dir / "public" / "published-summary" / "data" / "summary.json").read_text()
    )
    assert summary["job"] == "published-summary" and summary["objects"] == 0
    assert (data_dir / "public" / "published-summary" / "logs" / "1.log").exists()

    history = cli("history", "published-summary")
    assert history.returncode == 0
    assert "manual" in history.stdout and "succeeded" in history.stdout


def test_add_reports_each_invalid_field(example_tarball):
    result = cli(
        "add",
        "--name",
        "bad name",
        "--tarball",
        str(example_tarball),
        "--command",
        "true",
        "--frequency",
        "monthly",
        "--hour",
        "25",
        "--owner",
        "not-an-email",
    )
    assert result.returncode == 2
    for flag in ("--name:", "--hour:", "--owner:", "--day-of-month:"):
        assert flag in result.stderr


def test_unknown_job_is_a_clear_error(data_dir):
    result = cli("run-now", "nope")
    assert result.returncode == 2 and "no job named 'nope'" in result.stderr


@pytest.mark.parametrize(
    "command", [[], ["add"], ["list"], ["run-now"], ["history"], ["cancel"], ["remove"]]
)
def test_every_command_has_help(command, data_dir):
    result = cli(*command, "--help")
    assert result.returncode == 0 and "usage: python -m scheduler" in result.stdout


def test_service_executes_run_now_and_stops_cleanly_on_sigterm(example_tarball, data_dir, settings):
    assert add_example(example_tarball).returncode == 0
    service = subprocess.Popen(
        [sys.executable, "-m", "scheduler", "--sync-seconds", "0.5"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        engine = make_engine(settings.database_url)
        init_db(engine)
        Session = session_factory(engine)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with Session() as session:
                if service_alive(session):
                    break
            assert service.poll() is None, service.stdout.read()
            time.sleep(0.2)
        ran = cli("run-now", "published-summary", "--wait")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "executing the run in this process" not in ran.stdout
        assert (data_dir / "public" / "published-summary" / "data" / "summary.json").exists()
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            code = service.wait(60)
        except subprocess.TimeoutExpired:
            service.kill()
            raise
    output = service.stdout.read()
    assert code == 0, output
    assert "scheduler service stopped" in output
