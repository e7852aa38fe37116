"""Fixtures shared by the whole suite: real servers, settings in a temporary data dir, fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import AWS_TEST_ENV, MotoServer, RedisServer

REPO = Path(__file__).resolve().parents[1]

SHARED_FIXTURES = Path(
    os.environ.get(
        "TELEMETRY_SHARED_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"
    )
)


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """The real Mozilla data in ../shared/fixtures (read in place, never copied)."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(
            f"shared fixtures not found at {SHARED_FIXTURES} (set TELEMETRY_SHARED_FIXTURES)"
        )
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def moto(moto_server, monkeypatch):
    """A clean moto server (S3, SQS, EC2) for one test; yields the server (`.endpoint`).

    Both TELEMETRY_S3_ENDPOINT_URL and TELEMETRY_SQS_ENDPOINT_URL point at it (the stores and
    the queue each have their own endpoint setting)."""
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TELEMETRY_S3_ENDPOINT_URL", moto_server.endpoint)
    monkeypatch.setenv("TELEMETRY_SQS_ENDPOINT_URL", moto_server.endpoint)
    moto_server.reset()
    yield moto_server


@pytest.fixture
def private_moto(monkeypatch):
    """A moto server of the test's own, for a test that stops or restarts it (the shared one
    must stay up). Yields a list: a test that replaces the server with a new one on the same
    port appends it, and the last one is stopped."""
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    servers = [MotoServer().start()]
    yield servers
    servers[-1].stop()


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    redis_server.flush()
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL server for this test process (never the machine's own)."""
    from tests.support.servers import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    with postgres_server.fresh_database() as url:
        yield url


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A fresh TELEMETRY_DATA_DIR; every derived default (stores, queue, db) lives under it."""
    path = tmp_path / "var"
    monkeypatch.setenv("TELEMETRY_DATA_DIR", str(path))
    for name in list(os.environ):
        if name.startswith("TELEMETRY_") and name not in (
            "TELEMETRY_DATA_DIR",
            "TELEMETRY_SHARED_FIXTURES",
            "TELEMETRY_S3_ENDPOINT_URL",
            "TELEMETRY_SQS_ENDPOINT_URL",
        ):
            monkeypatch.delenv(name)
    return path


@pytest.fixture
def settings(data_dir):
    from pipeline.config import load_settings

    return load_settings()


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on a free port; `.url` for TELEMETRY_SMTP_URL, `.messages`."""
    from tests.support.servers import SmtpServer

    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def oidc_provider():
    """A real OpenID Connect provider (oidc-provider-mock) on loopback; yields its issuer URL.

    Users it knows (pick one by `sub` on its authorization page, or POST `sub` to it):
    `ada` (ada@example.org, verified), `eve` (eve@elsewhere.com, verified, a refused domain),
    `grace` (grace@partner.test, verified, group "analysts"), `mallory` (unverified
    mallory@example.org).
    """
    from oidc_provider_mock import User, run_server_in_thread

    users = [
        User(sub="ada", claims={"email": "ada@example.org", "email_verified": True}),
        User(sub="eve", claims={"email": "eve@elsewhere.com", "email_verified": True}),
        User(
            sub="grace",
            claims={"email": "grace@partner.test", "email_verified": True, "groups": ["analysts"]},
        ),
        User(sub="mallory", claims={"email": "mallory@example.org", "email_verified": False}),
    ]
    with run_server_in_thread(user_claims=users) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    """The app database on SQLite and on a fresh database of the tests' own PostgreSQL server."""
    from pipeline.db import init_db, make_engine

    if request.param == "sqlite":
        made = make_engine(f"sqlite:///{tmp_path}/app.db")
    else:
        made = make_engine(request.getfixturevalue("postgres_url"))  # a bare URL, as users write
    try:
        init_db(made)
        yield made
    finally:
        made.dispose()


@pytest.fixture
def example_tarball(tmp_path, data_dir) -> Path:
    """The example job's tarball as `python -m scheduler.examples.build` makes it."""
    out = tmp_path / "summary.tar.gz"
    subprocess.run(
        [sys.executable, "-m", "scheduler.examples.build", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    return out
