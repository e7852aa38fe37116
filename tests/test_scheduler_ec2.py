"""The EC2 runner against moto's EC2 and S3 servers: launch, tags, user-data, timeout, result."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import io
import shlex
import subprocess
import tarfile
import threading
import time
import urllib.request
import uuid

import boto3
import pytest

from scheduler.config import SchedulerConfig
from scheduler.jobs import store_tarball
from scheduler.models import RunState
from scheduler.runners.base import RunRequest
from scheduler.runners.ec2 import EC2Runner
from tests.servers import AWS_TEST_ENV

MOTO_IMAGE = "ami-12c6146b"  # one of moto's built-in AMIs


def tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b"mkdir -p output && echo 1 > output/n\n"
        info = tarfile.TarInfo("run.sh")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)  # same bytes every call


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
    )
    config = SchedulerConfig(
        ec2_endpoint_url=moto_server.endpoint,
        ec2_region="us-east-1",
        ec2_image_id=ec2_image,
        ec2_boot_allowance_seconds=0,
        ec2_poll_seconds=0.2,
    )
    return dataclasses.make_dataclass("Aws", ["s3", "ec2", "settings", "config", "public_bucket"])(
        s3, ec2, settings, config, public_bucket
    )


def request(aws, timeout=600.0, command="bash run.sh") -> RunRequest:
    key = store_tarball(aws.settings, "nightly", tarball())
    return RunRequest(
        run_id=11,
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
    assert (
        f'timeout --kill-after=30 "$TIMEOUT_SECONDS" setsid bash -c {shlex.quote(req.command)}\n'
        in script
    )
    syntax = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert syntax.returncode == 0, syntax.stderr
    assert "KEY_PREFIX=pub/" in script
    assert (
        'upload_file "$JOB_NAME/data/$rel"' in script
        and 'upload_file "$JOB_NAME/logs/$RUN_ID.log"' in script
    )
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
    thread = threading.Thread(
        target=lambda: result.update(outcome=runner.execute(req, seen.update))
    )
    thread.start()
    deadline = time.monotonic() + 30
    while "instance_id" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    instance_id = seen["instance_id"]
    # What the user-data does at the end: upload result and log, then shut down (= terminate).
    aws.s3.put_object(
        Bucket=aws.public_bucket, Key="pub/nightly/logs/11.result", Body=b"exit=0\nnightly/data/n\n"
    )
    aws.s3.put_object(
        Bucket=aws.public_bucket, Key="pub/nightly/logs/11.log", Body=b"line one\nline two\n"
    )
    aws.ec2.terminate_instances(InstanceIds=[instance_id])
    thread.join(60)
    outcome = result["outcome"]
    assert outcome.state == RunState.succeeded, outcome.reason
    assert outcome.published_files == ["nightly/data/n"]
    assert outcome.log_key == "nightly/logs/11.log" and "line two" in outcome.log_tail


def test_instance_gone_without_a_result_is_a_failure(aws):
    runner = EC2Runner(aws.settings, aws.config)
    req = request(aws)
    seen: dict = {}
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(outcome=runner.execute(req, seen.update))
    )
    thread.start()
    deadline = time.monotonic() + 30
    while "instance_id" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
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
