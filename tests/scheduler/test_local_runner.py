"""The local runner: extract, run in a process group with a timeout, guard and publish."""

from __future__ import annotations

import dataclasses
import os
import sys
import threading

import pytest

from pipeline.stores import open_store
from scheduler.config import SchedulerConfig
from scheduler.models import RunState
from scheduler.runners.local import LocalRunner
from tests.support.scheduler import processes_running, request
from tests.support.waiting import wait_for

UUID = "0b4cd4b2-6a3d-4c3e-9f1e-2f0f2f6c1a10"


@pytest.fixture
def config(tmp_path) -> SchedulerConfig:
    return SchedulerConfig(
        kill_grace_seconds=1.0, publish_max_file_bytes=10_000, work_dir=str(tmp_path / "runs")
    )


@pytest.fixture
def runner(settings, config) -> LocalRunner:
    return LocalRunner(settings, config)


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


def test_child_ignoring_sigterm_is_killed_at_the_timeout(settings, runner):
    command = "(trap '' TERM; exec sleep 3011) & wait"
    outcome = runner.execute(request(settings, command, timeout=1.5))
    assert outcome.state == RunState.timed_out
    assert "timed out" in outcome.reason and "every process of the run was killed" in outcome.reason
    wait_for(lambda: not processes_running("sleep 3011"), 30, "the child to be killed")


def test_background_children_do_not_outlive_a_successful_run(settings, runner):
    outcome = runner.execute(request(settings, "sleep 3012 & mkdir output"))
    assert outcome.state == RunState.succeeded
    wait_for(lambda: not processes_running("sleep 3012"), 30, "the background child to end")


def test_daemonised_process_does_not_outlive_the_run(settings, runner):
    """`setsid` leaves the process group and the session: the PID namespace still ends it."""
    command = (
        "setsid bash -c 'exec sleep 3013' </dev/null >/dev/null 2>&1 & sleep 0.5; mkdir output"
    )
    outcome = runner.execute(request(settings, command))
    assert outcome.state == RunState.succeeded, outcome.reason
    wait_for(lambda: not processes_running("sleep 3013"), 30, "the daemon to end with the run")


def test_cancel_kills_the_run(settings, runner):
    req = request(settings, "sleep 3014")
    result = {}
    thread = threading.Thread(target=lambda: result.update(outcome=runner.execute(req)))
    thread.start()
    wait_for(lambda: processes_running("sleep 3014"), 30, "the run to start")
    req.cancel.set()
    thread.join(60)
    assert result["outcome"].state == RunState.cancelled
    wait_for(lambda: not processes_running("sleep 3014"), 30, "the cancelled run to end")


def test_command_gets_a_clean_documented_environment(settings, runner, public, monkeypatch):
    monkeypatch.setenv("PARENT_ONLY_SECRET", "do-not-leak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-service-s-own-key")
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
    assert env["OUTPUT_DIR"] == "/job/output" and env["HOME"] == "/job"
    assert env["TMPDIR"] == "/tmp"
    assert env["TELEMETRY_PUBLISHED_URL"] == "file:///data/published"
    assert env["PATH"].split(":")[0] == os.path.dirname(sys.executable)
    assert "PARENT_ONLY_SECRET" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert "TELEMETRY_SECRET_KEY" not in env and "TELEMETRY_DATABASE_URL" not in env
    assert "TELEMETRY_DASHBOARD_SECRET_KEY" not in env
    assert "TELEMETRY_DATA_DIR" not in env and "TELEMETRY_PUBLIC_URL" not in env


def test_jobs_get_only_the_job_credentials(settings, runner, public, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "SERVICE")
    settings = dataclasses.replace(
        settings, job_aws_access_key_id="JOBKEY", job_aws_secret_access_key="JOBSECRET"
    )
    runner = LocalRunner(settings, runner.config)
    outcome = runner.execute(request(settings, "mkdir output; env | grep ^AWS_ > output/aws.txt"))
    assert outcome.state == RunState.succeeded, outcome.reason
    lines = set(public.get("demo/data/aws.txt").decode().splitlines())
    assert lines == {"AWS_ACCESS_KEY_ID=JOBKEY", "AWS_SECRET_ACCESS_KEY=JOBSECRET"}


def test_guard_refuses_raw_records_and_publishes_nothing(settings, runner, public):
    command = f"mkdir output; echo ok > output/fine.txt; printf '{UUID}\\t{{\"ver\": 4}}\\n' > output/leak.txt"
    outcome = runner.execute(request(settings, command))
    assert outcome.state == RunState.failed
    assert "leak.txt" in outcome.reason and "raw telemetry records" in outcome.reason
    assert list(public.list("demo/data/")) == []
    assert "not publishing leak.txt" in public.get("demo/logs/1.log").decode()


def test_guard_sees_raw_records_inside_gzip(settings, runner, public):
    command = f"mkdir output; printf '{UUID}\\t{{\"ver\": 4}}\\n' | gzip > output/records.gz"
    outcome = runner.execute(request(settings, command))
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
