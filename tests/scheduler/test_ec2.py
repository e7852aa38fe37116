"""The EC2 runner against moto's EC2 and S3 servers: launch, tags, user-data, timeout, result."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import lzma
import os
import random
import shlex
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest

from scheduler.clock import FakeClock
from scheduler.config import SchedulerConfig
from scheduler.jobs import store_tarball
from scheduler.models import RunState
from scheduler.runners.base import RunRequest
from scheduler.runners.ec2 import RUN_COMMAND_FUNCTION, EC2Runner
from scheduler.service import SchedulerService
from tests.support.scheduler import T0, RecordingRunner, add_job, left_running, runs_of
from tests.support.servers import AWS_TEST_ENV
from tests.support.tarballs import make_tarball
from tests.support.waiting import wait_for

MOTO_IMAGE = "ami-12c6146b"  # one of moto's built-in AMIs


def tarball() -> bytes:
    return make_tarball({"run.sh": "mkdir -p output && echo 1 > output/n\n"})


@pytest.fixture(scope="module")
def ec2_image(moto_server) -> str:
    """Reset moto once for this module: its EC2 backend takes seconds to load after a reset,
    so the tests share it and use buckets of their own instead of resetting each time."""
    moto_server.reset()
    ec2 = boto3.client("ec2", endpoint_url=moto_server.endpoint, region_name="us-east-1")
    return ec2.describe_images(ImageIds=[MOTO_IMAGE])["Images"][0]["ImageId"]


@pytest.fixture
def aws(moto_server, ec2_image, settings, monkeypatch):
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TELEMETRY_S3_ENDPOINT_URL", moto_server.endpoint)
    suffix = uuid.uuid4().hex[:10]
    code_bucket, public_bucket = f"code-{suffix}", f"public-{suffix}"
    s3 = boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=code_bucket)
    s3.create_bucket(Bucket=public_bucket)
    ec2 = boto3.client("ec2", endpoint_url=moto_server.endpoint, region_name="us-east-1")
    settings = dataclasses.replace(
        settings,
        code_url=f"s3://{code_bucket}/code",
        public_url=f"s3://{public_bucket}/pub",
        s3_endpoint_url=moto_server.endpoint,
        ec2_endpoint_url=moto_server.endpoint,
    )
    config = SchedulerConfig(
        ec2_region="us-east-1",
        ec2_image_id=ec2_image,
        ec2_boot_allowance_seconds=0,
        ec2_poll_seconds=0.2,
    )
    return dataclasses.make_dataclass(
        "Aws", ["s3", "ec2", "settings", "config", "public_bucket", "code_bucket"]
    )(s3, ec2, settings, config, public_bucket, code_bucket)


def request(aws, timeout=600.0, command="bash run.sh", run_id=11) -> RunRequest:
    key = store_tarball(aws.settings, "nightly", tarball())
    return RunRequest(
        run_id=run_id,
        job_name="nightly",
        owner="ana@example.com",
        tarball_key=key,
        command=command,
        output_dir="output",
        timeout_seconds=timeout,
        timeout_minutes=max(1, int(timeout // 60)),
    )


def instance(aws, instance_id):
    return aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def user_data(aws, instance_id) -> str:
    attribute = aws.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(attribute["UserData"]["Value"]).decode()


def test_launch_tags_the_instance_and_terminates_on_shutdown(aws):
    runner = EC2Runner(aws.settings, aws.config)
    instance_id = runner.launch(request(aws))
    tags = {t["Key"]: t["Value"] for t in instance(aws, instance_id)["Tags"]}
    assert tags == {"JobName": "nightly", "RunId": "11", "Owner": "ana@example.com"}
    behaviour = aws.ec2.describe_instance_attribute(
        InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior"
    )
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"


def test_user_data_runs_the_same_steps_as_the_local_runner(aws, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "distinctive-secret-value")
    import pipeline.aws

    monkeypatch.setattr(pipeline.aws, "_session", None)  # pick up the new secret
    runner = EC2Runner(aws.settings, aws.config)
    req = request(aws, timeout=120, command="bash run.sh && echo 'quoted; $HOME'")
    script = user_data(aws, runner.launch(req))
    assert script.startswith("#!/bin/bash")
    assert "TIMEOUT_SECONDS=120\n" in script
    assert "KILL_GRACE_SECONDS=10\n" in script  # the local runner's kill_grace_seconds
    assert (
        f'run_command "$TIMEOUT_SECONDS" "$KILL_GRACE_SECONDS" {shlex.quote(req.command)}\n'
        in script
    )
    assert RUN_COMMAND_FUNCTION in script
    assert "setsid" not in script  # it would take the command out of timeout's process group
    syntax = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert syntax.returncode == 0, syntax.stderr
    # Uploads go to the run's private staging prefix in the code bucket, never the public one.
    assert "KEY_PREFIX=code/_staging/nightly/11/" in script
    assert 'upload_file "data/$rel"' in script and 'upload_file "run.log"' in script
    upload_lines = [
        line for line in script.splitlines() if line.startswith(("POST_URL=", "POST_ARGS="))
    ]
    assert len(upload_lines) == 2 and not any(aws.public_bucket in line for line in upload_lines)
    assert "grep" not in script  # no guard in bash: the service guards the staged files
    assert "shutdown -h now" in script
    assert "OUTPUT_REL=output" in script
    # The pre-signed URL in the script really downloads the tarball, without credentials.
    url = next(
        line.split("=", 1)[1].strip("'")
        for line in script.splitlines()
        if line.startswith("TARBALL_URL=")
    )
    assert "X-Amz-Signature=" in url or "Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == tarball()
    assert "distinctive-secret-value" not in script  # signatures only, never the secret


def test_service_terminates_the_instance_at_the_timeout(aws):
    runner = EC2Runner(aws.settings, aws.config)
    outcome = runner.execute(request(aws, timeout=1))
    assert outcome.state == RunState.timed_out
    assert (
        outcome.instance_id
        and outcome.instance_id in outcome.reason
        and "terminated it" in outcome.reason
    )
    assert instance(aws, outcome.instance_id)["State"]["Name"] in ("shutting-down", "terminated")


def test_result_reported_by_the_instance_is_recorded(aws):
    runner = EC2Runner(aws.settings, aws.config)
    req = request(aws)
    seen: dict = {}
    result: dict = {}
    started = threading.Event()

    def on_started(info: dict) -> None:
        seen.update(info)
        started.set()

    thread = threading.Thread(target=lambda: result.update(outcome=runner.execute(req, on_started)))
    thread.start()
    assert started.wait(30), "the runner never reported its instance"
    instance_id = seen["instance_id"]
    # What the user-data does at the end: upload outputs, result and log to the staging
    # prefix, then shut down (= terminate).
    staging = "code/_staging/nightly/11/"
    for key, body in (
        ("data/n", b"1\n"),
        ("result", b"exit=0\n"),
        ("run.log", b"line one\nline two\n"),
    ):
        aws.s3.put_object(Bucket=aws.code_bucket, Key=staging + key, Body=body)
    aws.ec2.terminate_instances(InstanceIds=[instance_id])
    thread.join(60)
    outcome = result["outcome"]
    assert outcome.state == RunState.succeeded, outcome.reason
    assert outcome.published_files == ["nightly/data/n"]
    assert public_text(aws, "nightly/data/n") == "1\n"
    assert outcome.log_key == "nightly/logs/11.log" and "line two" in outcome.log_tail
    assert "line two" in public_text(aws, "nightly/logs/11.log")
    staged = aws.s3.list_objects_v2(Bucket=aws.code_bucket, Prefix=staging)
    assert staged.get("KeyCount", 0) == 0  # the staging prefix is cleaned up


def test_staged_raw_records_are_refused_by_the_service(aws):
    runner = EC2Runner(aws.settings, aws.config)
    req = request(aws, run_id=12)
    staging = "code/_staging/nightly/12/"
    raw = b'0b4cd4b2-6a3d-4c3e-9f1e-2f0f2f6c1a10 {"ver": 4}\n'
    for key, body in (
        ("data/fine.txt", b"fine\n"),
        ("data/raw.xz", lzma.compress(raw)),
        ("result", b"exit=0\n"),
        ("run.log", b"did things\n"),
    ):
        aws.s3.put_object(Bucket=aws.code_bucket, Key=staging + key, Body=body)
    outcome = runner.result(req, "i-test")
    assert outcome.state == RunState.failed
    assert "raw.xz" in outcome.reason and "rule raw-record-line" in outcome.reason
    listed = aws.s3.list_objects_v2(Bucket=aws.public_bucket, Prefix="pub/nightly/data/")
    assert listed.get("KeyCount", 0) == 0
    assert "not publishing raw.xz" in public_text(aws, "nightly/logs/12.log")


def test_instance_gone_without_a_result_is_a_failure(aws):
    runner = EC2Runner(aws.settings, aws.config)
    req = request(aws)
    seen: dict = {}
    result: dict = {}
    started = threading.Event()

    def on_started(info: dict) -> None:
        seen.update(info)
        started.set()

    thread = threading.Thread(target=lambda: result.update(outcome=runner.execute(req, on_started)))
    thread.start()
    assert started.wait(30), "the runner never reported its instance"
    aws.ec2.terminate_instances(InstanceIds=[seen["instance_id"]])
    thread.join(60)
    assert result["outcome"].state == RunState.failed
    assert "without reporting a result" in result["outcome"].reason


def test_local_stores_are_refused_with_a_clear_message(aws, settings):
    runner = EC2Runner(settings, aws.config)
    req = RunRequest(
        run_id=1,
        job_name="nightly",
        owner="a@example.com",
        tarball_key="nightly/x.tar.gz",
        command="true",
        output_dir="output",
        timeout_seconds=60,
        timeout_minutes=1,
    )
    outcome = runner.execute(req)
    assert outcome.state == RunState.failed
    assert "TELEMETRY_CODE_URL must be an s3:// URL" in outcome.reason


# -- the run step of the user-data, executed on its own --------------------------------------


def run_step(tmp_path, command: str, timeout: int = 2, grace: int = 1) -> tuple[int, float]:
    """Run RUN_COMMAND_FUNCTION with bash in `tmp_path`; returns (status, seconds taken)."""
    script = (
        RUN_COMMAND_FUNCTION + '\nJOB_ENV=("PATH=/usr/bin:/bin" "HOME=$PWD")\nrun_command "$@"\n'
    )
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "-c", script, "run-step", str(timeout), str(grace), command],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "OUTER_ONLY": "x"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # a leftover process holding a pipe would hang the test
        stderr=subprocess.DEVNULL,
        timeout=60,
    )
    return done.returncode, time.monotonic() - started


@pytest.fixture
def pids(tmp_path):
    """Read pid files the command wrote; whatever is still alive afterwards is killed."""
    seen: list[int] = []

    def read(name: str) -> int:
        pid = int((tmp_path / name).read_text())
        seen.append(pid)
        return pid

    yield read
    for pid in seen:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_run_step_timeout_kills_a_child_that_ignores_sigterm(tmp_path, pids):
    command = "bash -c 'trap \"\" TERM; echo $$ > stubborn.pid; exec sleep 60' & sleep 60"
    status, elapsed = run_step(tmp_path, command)
    assert status == 124
    assert wait_gone(pids("stubborn.pid"), 0.5)
    assert elapsed < 10  # 2 s timeout + 1 s grace, not the child's 60 s


def test_run_step_timeout_kills_a_command_that_ignores_sigterm_itself(tmp_path, pids):
    command = "trap '' TERM; echo $$ > main.pid; sleep 60 & echo $! > child.pid; wait; sleep 60"
    status, elapsed = run_step(tmp_path, command)
    assert status == 137  # timeout's SIGKILL after the grace
    assert wait_gone(pids("main.pid"), 0.5) and wait_gone(pids("child.pid"), 0.5)
    assert elapsed < 10


def test_run_step_returns_the_status_and_kills_what_the_command_left_running(tmp_path, pids):
    status, elapsed = run_step(
        tmp_path, "sleep 60 & echo $! > background.pid; env > env.txt; exit 3"
    )
    assert status == 3
    assert wait_gone(pids("background.pid"), 0.5)
    assert elapsed < 5
    names = {line.split("=", 1)[0] for line in (tmp_path / "env.txt").read_text().splitlines()}
    assert names - {"PWD", "SHLVL", "_"} == {"PATH", "HOME"}  # env -i: nothing else inherited


# -- the generated user-data, executed on this machine ----------------------------------------
#
# The instance's script is plain bash; run here against moto's S3 (pre-signed GET and POST work
# the same) with a `shutdown` stub first on PATH, it does on this machine what it would do on an
# instance, except that the stub does not power anything off.


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    return wait_for(lambda: not alive(pid), seconds, f"process {pid} to end")


@pytest.fixture
def here(aws, tmp_path):
    """Run a request's user-data locally; yields a function returning (outcome, work dir)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "shutdown").write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/shutdown-args"\n')
    (fake_bin / "shutdown").chmod(0o755)
    works: list[Path] = []
    stray: list[int] = []
    config = dataclasses.replace(aws.config, kill_grace_seconds=1.0)
    runner = EC2Runner(aws.settings, config)

    def run(req: RunRequest) -> tuple:
        work = Path(f"/var/tmp/telemetry-run-{req.run_id}")
        shutil.rmtree(work, ignore_errors=True)
        works.append(work)
        script = tmp_path / f"user-data-{req.run_id}.sh"
        script.write_text(runner.user_data(req))
        env = {
            "PATH": f"{fake_bin}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "CLOUD_INIT_ONLY": "not for the job",  # what cloud-init's environment might hold
        }
        started = time.monotonic()
        subprocess.run(
            ["bash", str(script)],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
        elapsed = time.monotonic() - started
        for name in ("stubborn.pid", "background.pid"):
            if (work / "job" / name).exists():
                stray.append(int((work / "job" / name).read_text()))
        assert (fake_bin / "shutdown-args").read_text().split() == ["-h", "now"]
        return runner.result(req, "i-here"), work, elapsed

    yield run
    for pid in stray:  # whatever an unfixed script left behind must not outlive the test
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for work in works:
        shutil.rmtree(work, ignore_errors=True)


def public_text(aws, key: str) -> str:
    return aws.s3.get_object(Bucket=aws.public_bucket, Key=f"pub/{key}")["Body"].read().decode()


def test_user_data_run_here_publishes_kills_leftovers_and_gives_a_clean_environment(aws, here):
    command = "bash run.sh && env > output/env.txt && { sleep 300 & echo $! > background.pid; }"
    req = request(aws, timeout=60, command=command, run_id=random.randrange(10**8, 10**9))
    outcome, work, _ = here(req)
    assert outcome.state == RunState.succeeded, (outcome.reason, outcome.log_tail)
    assert sorted(outcome.published_files) == ["nightly/data/env.txt", "nightly/data/n"]
    assert public_text(aws, "nightly/data/n") == "1\n"
    # The background child the command left running is gone before anything is uploaded.
    assert wait_gone(int((work / "job" / "background.pid").read_text()), 0.5)
    env = dict(line.split("=", 1) for line in public_text(aws, "nightly/data/env.txt").splitlines())
    for bash_own in ("PWD", "SHLVL", "_"):
        env.pop(bash_own, None)
    assert env == {
        "JOB_NAME": "nightly",
        "RUN_ID": str(req.run_id),
        "OUTPUT_DIR": f"{work}/job/output",
        "HOME": f"{work}/job",
        "TMPDIR": f"{work}/tmp",
        "LANG": "C.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "TELEMETRY_PUBLIC_URL": aws.settings.public_url,
        "TELEMETRY_HG_BASE_URL": aws.settings.hg_base_url,
        "TELEMETRY_S3_ENDPOINT_URL": aws.settings.s3_endpoint_url,
    }  # TELEMETRY_PUBLISHED_URL is a file:// URL here: a place on the service's machine


def test_user_data_timeout_kills_children_that_ignore_sigterm(aws, here):
    command = (
        "bash -c 'trap \"\" TERM; echo $$ > stubborn.pid; exec sleep 60' & "
        "sleep 60; mkdir -p output; echo too-late > output/n"
    )
    req = request(aws, timeout=2, command=command, run_id=random.randrange(10**8, 10**9))
    outcome, work, elapsed = here(req)
    assert outcome.state == RunState.timed_out, (outcome.reason, outcome.log_tail)
    stubborn = int((work / "job" / "stubborn.pid").read_text())
    assert wait_gone(stubborn, 0.5), "a child ignoring SIGTERM outlived the timeout"
    assert elapsed < 30  # timeout (2 s) + kill grace (1 s) + set-up and uploads
    assert outcome.published_files == []


def test_the_service_terminates_the_instance_of_a_lost_run_through_the_runner(
    aws,
    settings,
    Session,
):
    instance_id = EC2Runner(aws.settings, aws.config).launch(request(aws))
    job = add_job(Session, settings, runner="ec2")
    left_running(Session, job.id, T0, instance_id)
    service = SchedulerService(
        aws.settings,
        aws.config,
        clock=FakeClock(T0 + dt.timedelta(minutes=10)),
        runners={"local": RecordingRunner()},
    )
    service.mark_lost()
    assert instance(aws, instance_id)["State"]["Name"] in ("shutting-down", "terminated")
    (run,) = runs_of(Session, job.id)
    assert run.state == RunState.lost.value
