"""The local runner: extract, run in a process group with a timeout, guard and publish."""

from __future__ import annotations

import gzip
import io
import os
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from pipeline.stores import open_store
from scheduler.config import SchedulerConfig
from scheduler.jobs import store_tarball
from scheduler.models import RunState
from scheduler.runners.base import RunRequest
from scheduler.runners.local import LocalRunner

UUID = "0b4cd4b2-6a3d-4c3e-9f1e-2f0f2f6c1a10"


def tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def config(tmp_path) -> SchedulerConfig:
    return SchedulerConfig(
        kill_grace_seconds=1.0, publish_max_file_bytes=10_000, work_dir=str(tmp_path / "runs")
    )


@pytest.fixture
def runner(settings, config) -> LocalRunner:
    return LocalRunner(settings, config)


@pytest.fixture
def public(settings):
    return open_store(settings.public_url)


def request(
    settings, command: str, *, name="demo", run_id=1, timeout=30.0, output_dir="output", files=None
) -> RunRequest:
    key = store_tarball(
        settings, name, tarball(files or {"hello.sh": "echo hello from the tarball\n"})
    )
    return RunRequest(
        run_id=run_id,
        job_name=name,
        owner="o@example.com",
        tarball_key=key,
        command=command,
        output_dir=output_dir,
        timeout_seconds=timeout,
        timeout_minutes=1,
    )


def process_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in (
        "Z",
        "X",
    )  # zombies wait for a reaper, but are dead


def wait_until(predicate, timeout=30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_outputs_and_log_are_published_at_the_documented_keys(settings, runner, public):
    command = "bash hello.sh; echo to-stderr >&2; mkdir -p output/sub; echo '{\"n\": 1}' > output/summary.json; echo a,b > output/sub/table.csv"
    outcome = runner.execute(request(settings, command, run_id=7))
    assert outcome.state == RunState.succeeded, outcome.reason
    assert sorted(outcome.published_files) == ["demo/data/sub/table.csv", "demo/data/summary.json"]
    assert public.get("demo/data/summary.json") == b'{"n": 1}\n'
    assert public.get("demo/data/sub/table.csv") == b"a,b\n"
    assert outcome.log_key == "demo/logs/7.log"
    log_text = public.get("demo/logs/7.log").decode()
    assert "hello from the tarball" in log_text and "to-stderr" in log_text
    assert "hello from the tarball" in outcome.log_tail


def test_missing_output_directory_fails_with_a_clear_reason(settings, runner, public):
    outcome = runner.execute(request(settings, "echo no output here"))
    assert outcome.state == RunState.failed
    assert "output directory 'output' does not exist" in outcome.reason
    assert public.exists("demo/logs/1.log")
    assert list(public.list("demo/data/")) == []


def test_non_zero_exit_fails_and_publishes_nothing(settings, runner, public):
    outcome = runner.execute(request(settings, "mkdir output; echo partial > output/x; exit 3"))
    assert outcome.state == RunState.failed
    assert outcome.exit_code == 3
    assert "exited with status 3" in outcome.reason
    assert list(public.list("demo/data/")) == []


def test_child_ignoring_sigterm_is_killed_at_the_timeout(settings, runner, tmp_path):
    pid_file = tmp_path / "child.pid"
    command = f"(trap '' TERM; exec sleep 300) & echo $! > {pid_file}; wait"
    outcome = runner.execute(request(settings, command, timeout=1.5))
    assert outcome.state == RunState.timed_out
    assert "timed out" in outcome.reason and "process group was killed" in outcome.reason
    child = int(pid_file.read_text())
    assert wait_until(lambda: process_gone(child)), f"child {child} survived the timeout"


def test_background_children_do_not_outlive_a_successful_run(settings, runner, tmp_path):
    pid_file = tmp_path / "daemon.pid"
    outcome = runner.execute(request(settings, f"sleep 300 & echo $! > {pid_file}; mkdir output"))
    assert outcome.state == RunState.succeeded
    assert wait_until(lambda: process_gone(int(pid_file.read_text())))


def test_cancel_kills_the_run(settings, runner, tmp_path):
    pid_file = tmp_path / "run.pid"
    req = request(settings, f"echo $$ > {pid_file}; sleep 300")
    result = {}
    thread = threading.Thread(target=lambda: result.update(outcome=runner.execute(req)))
    thread.start()
    assert wait_until(pid_file.exists)
    req.cancel.set()
    thread.join(60)
    assert result["outcome"].state == RunState.cancelled
    assert wait_until(lambda: process_gone(int(pid_file.read_text())))


def test_command_gets_a_clean_documented_environment(settings, runner, public, monkeypatch):
    monkeypatch.setenv("PARENT_ONLY_SECRET", "do-not-leak")
    outcome = runner.execute(
        request(settings, "mkdir output; env | sort > output/env.txt", run_id=42)
    )
    assert outcome.state == RunState.succeeded, outcome.reason
    env = dict(
        line.split("=", 1)
        for line in public.get("demo/data/env.txt").decode().splitlines()
        if "=" in line
    )
    assert env["JOB_NAME"] == "demo" and env["RUN_ID"] == "42"
    assert env["OUTPUT_DIR"].endswith("/output") and env["HOME"] == str(
        Path(env["OUTPUT_DIR"]).parent
    )
    assert env["TELEMETRY_PUBLISHED_URL"] == settings.published_url
    assert env["PATH"].split(":")[0] == os.path.dirname(sys.executable)
    assert "PARENT_ONLY_SECRET" not in env
    assert "TELEMETRY_SECRET_KEY" not in env and "TELEMETRY_DATABASE_URL" not in env


def test_guard_refuses_raw_records_and_publishes_nothing(settings, runner, public):
    command = f"mkdir output; echo ok > output/fine.txt; printf '{UUID}\\t{{\"ver\": 4}}\\n' > output/leak.txt"
    outcome = runner.execute(request(settings, command))
    assert outcome.state == RunState.failed
    assert "leak.txt" in outcome.reason and "raw telemetry records" in outcome.reason
    assert list(public.list("demo/data/")) == []
    assert "not publishing leak.txt" in public.get("demo/logs/1.log").decode()


def test_guard_sees_raw_records_inside_gzip(settings, runner, public, tmp_path):
    gz = tmp_path / "records.gz"
    gz.write_bytes(gzip.compress(f'{UUID}\t{{"ver": 4}}\n'.encode()))
    outcome = runner.execute(request(settings, f"mkdir output; cp {gz} output/records.gz"))
    assert outcome.state == RunState.failed
    assert "raw telemetry records" in outcome.reason


def test_guard_refuses_files_over_the_size_limit(settings, runner, public):
    outcome = runner.execute(
        request(settings, "mkdir output; head -c 20000 /dev/zero > output/big.bin")
    )
    assert outcome.state == RunState.failed
    assert "big.bin" in outcome.reason and "over the publish limit of 10000 bytes" in outcome.reason


def test_guard_refuses_symlinks_out_of_the_output(settings, runner, public):
    outcome = runner.execute(request(settings, "mkdir output; ln -s /etc/passwd output/passwd"))
    assert outcome.state == RunState.failed
    assert "symbolic link" in outcome.reason
    assert list(public.list("demo/data/")) == []


def test_missing_tarball_fails_with_a_clear_reason(settings, runner):
    req = request(settings, "true")
    open_store(settings.code_url).delete(req.tarball_key)
    outcome = runner.execute(req)
    assert outcome.state == RunState.failed
    assert "missing from the code store" in outcome.reason
