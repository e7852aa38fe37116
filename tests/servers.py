"""Real servers for tests: moto (S3, SQS, EC2), redis-server. Started on free loopback ports.

Kept out of conftest.py so that a test needing a private instance (the outage test stops its
S3 server) can start one with the same code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_SESSION_TOKEN": "testing",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class MotoServer:
    """moto's real HTTP server (S3, SQS, EC2, ...) in a thread of this process."""

    def __init__(self, port: int | None = None) -> None:
        from moto.server import ThreadedMotoServer

        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> MotoServer:
        for key, value in AWS_TEST_ENV.items():
            os.environ.setdefault(key, value)
        self._server.start()
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()


class RedisServer:
    """A real redis-server process on a free port, stopped by pid."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed (make setup installs it)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="redis-test-")
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(10)
        shutil.rmtree(self._dir, ignore_errors=True)

    def flush(self) -> None:
        import redis

        redis.Redis.from_url(self.url).flushall()


class SmtpServer:
    """A real SMTP server (aiosmtpd) in a thread of this process; keeps every message received.

    `url` is the TELEMETRY_SMTP_URL to use; `messages` are `email.message.Message` objects;
    `wait_for(n)` polls until n messages arrived.
    """

    def __init__(self) -> None:
        import email
        import threading

        from aiosmtpd.controller import Controller

        self.port = free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.messages: list = []
        self._lock = threading.Lock()
        server = self

        class _Handler:
            async def handle_DATA(self, _server, _session, envelope):  # noqa: N802 - aiosmtpd API
                message = email.message_from_bytes(envelope.original_content or envelope.content)
                message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
                with server._lock:
                    server.messages.append(message)
                return "250 OK"

        self._controller = Controller(_Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def wait_for(self, count: int = 1, timeout: float = 30.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise TimeoutError(
            f"expected {count} message(s), got {len(self.messages)} after {timeout}s"
        )


@contextlib.contextmanager
def running(server) -> Iterator:
    server.start()
    try:
        yield server
    finally:
        server.stop()
