"""The SQS work queue has its own endpoint (TELEMETRY_SQS_ENDPOINT_URL) and boto3's region.

The stores' S3 endpoint (say MinIO) says nothing about where the queue is, so the queue must
never follow TELEMETRY_S3_ENDPOINT_URL. The two endpoints here are two separate moto servers:
the suite's in-process one for S3, and one in a process of its own for SQS (moto servers in
one process share their state, so they could not be told apart).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import botocore.exceptions
import pytest

import pipeline.aws
from pipeline.config import load_settings
from pipeline.queues import open_work_queue
from tests.support.servers import MotoProcess

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sqs_server():
    server = MotoProcess().start()
    yield server
    server.stop()


def queue_names(endpoint: str) -> list[str]:
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    return [url.rsplit("/", 1)[-1] for url in sqs.list_queues().get("QueueUrls", [])]


def waiting(endpoint: str, name: str) -> int:
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_messages_go_to_the_sqs_endpoint_not_the_s3_one(data_dir, moto, sqs_server, monkeypatch):
    name = f"work-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TELEMETRY_QUEUE_URL", f"sqs://{name}")
    monkeypatch.setenv("TELEMETRY_S3_ENDPOINT_URL", moto.endpoint)
    monkeypatch.setenv("TELEMETRY_SQS_ENDPOINT_URL", sqs_server.endpoint)
    settings = load_settings()
    assert settings.s3_endpoint_url == moto.endpoint
    assert settings.sqs_endpoint_url == sqs_server.endpoint
    queue = open_work_queue(settings)
    try:
        queue.send('{"key": "20240101/a.batch"}')
        queue.send('{"key": "20240101/b.batch"}')
    finally:
        queue.close()
    assert waiting(sqs_server.endpoint, name) == 2
    assert name not in queue_names(moto.endpoint)
    with pytest.raises(botocore.exceptions.ClientError):
        waiting(moto.endpoint, name)


def test_the_sqs_endpoint_may_come_from_the_toml_file(data_dir, moto, sqs_server, monkeypatch):
    name = f"toml-{uuid.uuid4().hex[:8]}"
    config = data_dir.parent / "telemetry.toml"
    config.write_text(f'queue_url = "sqs://{name}"\nsqs_endpoint_url = "{sqs_server.endpoint}"\n')
    monkeypatch.delenv("TELEMETRY_SQS_ENDPOINT_URL")
    monkeypatch.setenv("TELEMETRY_CONFIG", str(config))
    queue = open_work_queue(load_settings())
    try:
        queue.send("hello")
    finally:
        queue.close()
    assert waiting(sqs_server.endpoint, name) == 1
    assert name not in queue_names(moto.endpoint)


def test_check_opens_the_queue_at_the_sqs_endpoint(tmp_path, moto, sqs_server):
    name = f"check-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env.update(
        TELEMETRY_DATA_DIR=str(tmp_path / "var"),
        TELEMETRY_QUEUE_URL=f"sqs://{name}",
        TELEMETRY_S3_ENDPOINT_URL=moto.endpoint,
        TELEMETRY_SQS_ENDPOINT_URL=sqs_server.endpoint,
        PYTHONPATH=str(REPO),
    )
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"OK   TELEMETRY_QUEUE_URL sqs://{name}" in result.stdout.splitlines()
    assert name in queue_names(sqs_server.endpoint)
    assert name not in queue_names(moto.endpoint)


@pytest.fixture
def fresh_boto_session(monkeypatch, tmp_path):
    """No region in the environment, an AWS config file of the test's own, a new session."""
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_PROFILE", raising=False)
    config = tmp_path / "aws-config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setattr(pipeline.aws, "_session", None)
    return config


def open_region_queue(monkeypatch):
    monkeypatch.setenv("TELEMETRY_QUEUE_URL", f"sqs://region-{uuid.uuid4().hex[:8]}")
    return open_work_queue(load_settings())


def test_the_sqs_region_is_the_aws_profiles(data_dir, moto, fresh_boto_session, monkeypatch):
    fresh_boto_session.write_text("[default]\nregion = eu-west-1\n")
    queue = open_region_queue(monkeypatch)
    try:
        assert queue.region == "eu-west-1"
        assert queue._client.meta.region_name == "eu-west-1"
    finally:
        queue.close()


def test_aws_default_region_beats_the_profile(data_dir, moto, fresh_boto_session, monkeypatch):
    fresh_boto_session.write_text("[default]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    queue = open_region_queue(monkeypatch)
    try:
        assert queue._client.meta.region_name == "ap-south-1"
    finally:
        queue.close()


def test_the_sqs_region_is_us_east_1_when_boto3_has_none(
    data_dir, moto, fresh_boto_session, monkeypatch
):
    queue = open_region_queue(monkeypatch)
    try:
        assert queue.region == "us-east-1"
        assert queue._client.meta.region_name == "us-east-1"
    finally:
        queue.close()


def test_an_s3_endpoint_without_an_sqs_endpoint_is_warned_about(data_dir, monkeypatch, caplog):
    """Before the SQS endpoint was a setting of its own, SQS followed the S3 endpoint."""
    from pipeline.config import load_settings
    from pipeline.queues import open_work_queue

    monkeypatch.setenv("TELEMETRY_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TELEMETRY_QUEUE_URL", "sqs://warned")
    monkeypatch.delenv("TELEMETRY_SQS_ENDPOINT_URL", raising=False)
    monkeypatch.setattr("pipeline.queues.open_queue", lambda *args, **kwargs: None)
    with caplog.at_level("WARNING"):
        open_work_queue(load_settings())
    assert "uses AWS's own SQS endpoint" in caplog.text
