"""The S3 store rides out short outages and fails with StoreError when they last.

Against real servers: a private moto server that the tests stop and restart on the same port,
and, for a body stream that breaks after the headers, a tiny HTTP server that speaks just
enough S3 (HEAD bucket, GET object) and cuts the connection mid-body.

botocore's "standard" retry mode waits rand(0, 1) * 50 ms * 2**i between attempts for a
connection error (1 s base only for throttling), so the default 5 attempts cover well under a
second of outage: the "endpoint comes back" tests use the `max_attempts` knob to widen the
window, and the "endpoint stays down" tests use the defaults to show the failure is prompt.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from pipeline.errors import StoreError
from pipeline.stores import open_store
from pipeline.stores.s3 import S3Store
from tests.support.servers import AWS_TEST_ENV, MotoServer

BUCKET = "retry-bucket"


@pytest.fixture
def private_moto(private_moto, monkeypatch):
    """The test's own moto server with the bucket made; stores get its endpoint explicitly."""
    monkeypatch.delenv("TELEMETRY_S3_ENDPOINT_URL", raising=False)
    boto3.client("s3", endpoint_url=private_moto[0].endpoint).create_bucket(Bucket=BUCKET)
    return private_moto


def count_attempts(store: S3Store, operation: str = "") -> threading.Event:
    """An event set once botocore sends `operation` (any, by default) a second time."""
    retrying = threading.Event()
    attempts = []

    def before_send(**_kwargs) -> None:
        attempts.append(1)
        if len(attempts) >= 2:
            retrying.set()

    store._client.meta.events.register(
        f"before-send.s3{'.' + operation if operation else ''}", before_send
    )
    return retrying


def restart_when_retrying(servers: list[MotoServer], retrying: threading.Event) -> None:
    assert retrying.wait(10), "botocore never retried the request"
    # moto keeps its state in this process, so the restarted server still has the bucket and
    # its objects; creating the bucket again is what a fresh server would need, and is harmless.
    servers.append(MotoServer(port=servers[0].port).start())
    s3 = boto3.client("s3", endpoint_url=servers[-1].endpoint)
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass


def test_put_during_a_short_outage_succeeds_when_the_endpoint_returns(private_moto):
    moto = private_moto[0]
    store = S3Store(f"s3://{BUCKET}", BUCKET, endpoint_url=moto.endpoint, max_attempts=15)
    retrying = count_attempts(store, "PutObject")
    moto.stop()
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        pending = pool.submit(store.put, "during/outage", b"payload" * 1000)
        restart_when_retrying(private_moto, retrying)
        pending.result(timeout=60)
    assert time.monotonic() - started < 30
    s3 = boto3.client("s3", endpoint_url=moto.endpoint)
    body = s3.get_object(Bucket=BUCKET, Key="during/outage")["Body"].read()
    assert body == b"payload" * 1000
    store.close()


def test_get_during_a_short_outage_succeeds_when_the_endpoint_returns(private_moto):
    moto = private_moto[0]
    data = bytes(range(256)) * 400
    boto3.client("s3", endpoint_url=moto.endpoint).put_object(
        Bucket=BUCKET, Key="before/outage", Body=data
    )
    store = S3Store(f"s3://{BUCKET}", BUCKET, endpoint_url=moto.endpoint, max_attempts=15)
    retrying = count_attempts(store, "GetObject")
    moto.stop()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(store.get, "before/outage")
        restart_when_retrying(private_moto, retrying)
        assert pending.result(timeout=60) == data
    store.close()


@pytest.mark.parametrize(
    "operation",
    [
        lambda store, tmp_path: store.put("k", b"v"),
        lambda store, tmp_path: store.put_file("k", str(tmp_path / "f")),
        lambda store, tmp_path: store.get("k"),
        lambda store, tmp_path: store.exists("k"),
        lambda store, tmp_path: list(store.list("")),
        lambda store, tmp_path: store.delete("k"),
    ],
    ids=["put", "put_file", "get", "exists", "list", "delete"],
)
def test_endpoint_that_stays_down_fails_with_store_error_promptly(
    private_moto, tmp_path, operation
):
    moto = private_moto[0]
    (tmp_path / "f").write_bytes(b"v")
    store = open_store(f"s3://{BUCKET}/p", endpoint_url=moto.endpoint)  # default retries
    retrying = count_attempts(store)
    moto.stop()
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        operation(store, tmp_path)
    assert time.monotonic() - started < 10
    assert retrying.is_set()  # it did retry before giving up
    assert f"s3://{BUCKET}/p" in str(caught.value)
    assert "Could not connect" in str(caught.value)
    store.close()


# -- a body stream that breaks after the headers ------------------------------------------------

BODY = b"0123456789abcdef" * 4096  # 64 KiB


class FlakyS3Handler(http.server.BaseHTTPRequestHandler):
    """HEAD /bucket answers 200; GET /bucket/key sends half the body and drops the connection
    for the first `server.cuts` requests, then the whole body."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - http.server API
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.server.gets += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if self.server.gets <= self.server.cuts:
            self.wfile.write(BODY[: len(BODY) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(BODY)


@pytest.fixture
def flaky_s3(monkeypatch):
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyS3Handler)
    server.gets, server.cuts = 0, 1
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_get_retries_a_body_stream_that_breaks_mid_object(flaky_s3):
    store = S3Store("s3://b", "b", endpoint_url=f"http://127.0.0.1:{flaky_s3.server_port}")
    assert store.get("key") == BODY
    assert flaky_s3.gets == 2
    store.close()


def test_get_whose_body_stream_keeps_breaking_fails_with_store_error(flaky_s3):
    flaky_s3.cuts = 1000
    store = S3Store("s3://b", "b", endpoint_url=f"http://127.0.0.1:{flaky_s3.server_port}")
    started = time.monotonic()
    with pytest.raises(StoreError, match="s3://b: get 'key' failed"):
        store.get("key")
    assert time.monotonic() - started < 10
    assert flaky_s3.gets == 4  # the whole get was tried four times
    store.close()


def test_get_file_retries_a_body_stream_that_breaks_mid_object(flaky_s3, tmp_path):
    """MapReduce downloads whole objects to its cache with get_file."""
    store = S3Store("s3://b", "b", endpoint_url=f"http://127.0.0.1:{flaky_s3.server_port}")
    store.get_file("key", str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == BODY
    assert flaky_s3.gets == 2
    store.close()


def test_get_file_whose_body_stream_keeps_breaking_fails_with_store_error(flaky_s3, tmp_path):
    flaky_s3.cuts = 1000
    store = S3Store("s3://b", "b", endpoint_url=f"http://127.0.0.1:{flaky_s3.server_port}")
    with pytest.raises(StoreError, match="s3://b: download 'key' failed"):
        store.get_file("key", str(tmp_path / "out"))
    assert flaky_s3.gets == 4
    store.close()
