"""Real servers for tests: moto (S3, SQS, EC2), redis-server, PostgreSQL, aiosmtpd.

Each is started on a free loopback port by the tests themselves, never the machine's own
services, and stopped by pid.

Kept out of conftest.py so that a test needing a private instance (the outage test stops its
S3 server) can start one with the same code.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

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


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports (a service whose workers listen on PORT+i).

    Chosen below the kernel's ephemeral range (32768 and up), so no client connection of a
    test running beside it is given one of them between this check and the service's bind,
    as happens to PORT+1 after `free_port()`."""
    rng = random.Random()
    for _attempt in range(200):
        base = rng.randrange(20000, 32000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports below 32000")


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


class MotoProcess(MotoServer):
    """moto's server in a process of its own, stopped by pid.

    Every `MotoServer` in this process shares moto's in-memory backends, so two of them are
    one AWS behind two ports. A test that must tell two endpoints apart (the queue's and the
    stores') starts this one for the second.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> MotoProcess:
        for key, value in AWS_TEST_ENV.items():
            os.environ.setdefault(key, value)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, timeout=60.0)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(10)


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


class PostgresUnavailable(RuntimeError):
    pass


class PostgresServer:
    """A private PostgreSQL cluster (initdb in a temporary directory) on a free port.

    PostgreSQL refuses to run as root, so under root (as in CI) the cluster belongs to the
    `postgres` system user that Debian's package creates. Durability is switched off: the
    cluster lives for one test session. `fresh_database()` hands each test an empty database.
    """

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
        initdb = found[-1] if found else shutil.which("initdb")
        if initdb is None:
            raise PostgresUnavailable("PostgreSQL is not installed (make setup installs it)")
        self.bindir = os.path.dirname(initdb)
        self.port = free_port()
        self.admin_url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        self._dir = tempfile.mkdtemp(prefix="postgres-test-")
        self._as_user: dict = {}
        if os.geteuid() == 0:
            try:
                import pwd

                owner = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable("no 'postgres' user to run the server as") from exc
            os.chown(self._dir, owner.pw_uid, owner.pw_gid)
            self._as_user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> PostgresServer:
        data = os.path.join(self._dir, "data")
        subprocess.run(
            [f"{self.bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            + ["--no-sync", "--no-instructions"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self._dir,
            **self._as_user,
        )
        settings = ["listen_addresses=127.0.0.1", f"unix_socket_directories={self._dir}"]
        settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        settings += ["max_connections=200"]
        command = [f"{self.bindir}/postgres", "-D", data, "-p", str(self.port)]
        for setting in settings:
            command += ["-c", setting]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self._dir,
            **self._as_user,
        )
        self._wait_until_ready(timeout)
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        from sqlalchemy import create_engine

        deadline = time.monotonic() + timeout
        engine = create_engine(self.admin_url, connect_args={"connect_timeout": 2})
        try:
            while True:
                try:
                    with engine.connect():
                        return
                except Exception:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            engine.dispose()

    @contextlib.contextmanager
    def fresh_database(self, prefix: str = "test") -> Iterator[str]:
        """An empty database for one test; yields its URL as users write it."""
        import uuid

        from sqlalchemy import create_engine, text

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            yield f"postgresql://postgres@127.0.0.1:{self.port}/{name}"
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)  # "fast" shutdown: ends open sessions
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self._dir, ignore_errors=True)


def _version_key(path: str) -> tuple[int, ...]:
    version = path.split("/")[-3]
    return tuple(int(part) for part in version.split(".") if part.isdigit())


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


@contextlib.contextmanager
def service(args: list[str], log_path: Path, env: dict):
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
