"""The session-signing key: an explicit TELEMETRY_DASHBOARD_SECRET_KEY wins; otherwise a random key is made
once per data directory, kept in `<data_dir>/dashboard-secret-key` (mode 0600) and reused."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from dashboard import create_app
from dashboard.config import load_dashboard_config
from pipeline.config import load_settings
from pipeline.errors import ConfigError
from tests.support.dashboard import add_user, sign_in

OLD_CONSTANT = "dev-only-change-me"
COOKIE = "telemetry_session"


def key_file(settings) -> Path:
    return Path(settings.data_dir) / "dashboard-secret-key"


def forged_cookie(secret: str, user_id: int) -> str:
    """A session cookie saying `user_id` is signed in, signed with `secret`."""
    app = Flask("forger")
    app.secret_key = secret
    return SecureCookieSessionInterface().get_signing_serializer(app).dumps({"user_id": user_id})


def test_two_starts_with_the_same_data_dir_share_a_generated_key(settings):
    first = create_app(settings)
    second = create_app(load_settings())  # a restart reads the settings again
    assert first.secret_key == second.secret_key
    assert first.secret_key != OLD_CONSTANT and len(first.secret_key) >= 40
    path = key_file(settings)
    assert path.read_text().strip() == first.secret_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir() if "secret" in p.name] == [path.name]


def test_a_session_survives_a_restart_and_a_cookie_signed_with_the_old_constant_does_not_work(
    settings,
):
    app = create_app(settings)
    ada = add_user(app, "ada@example.org", admin=True)
    client = app.test_client()
    sign_in(client, "ada@example.org")
    cookie = client.get_cookie(COOKIE).value
    restarted = create_app(load_settings()).test_client()
    restarted.set_cookie(COOKIE, cookie)
    assert restarted.get("/jobs").status_code == 200
    forger = create_app(settings).test_client()
    forger.set_cookie(COOKIE, forged_cookie(OLD_CONSTANT, ada))
    response = forger.get("/jobs")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_an_explicit_secret_key_wins_and_no_file_is_written(data_dir, monkeypatch):
    monkeypatch.setenv("TELEMETRY_DASHBOARD_SECRET_KEY", "operator-chosen-key-0123456789")
    settings = load_settings()
    app = create_app(settings)
    assert app.secret_key == "operator-chosen-key-0123456789"
    assert not key_file(settings).exists()
    # ... also over a key file left from an earlier start without one.
    monkeypatch.delenv("TELEMETRY_DASHBOARD_SECRET_KEY")
    generated = create_app(load_settings()).secret_key
    monkeypatch.setenv("TELEMETRY_DASHBOARD_SECRET_KEY", "operator-chosen-key-0123456789")
    assert create_app(load_settings()).secret_key == "operator-chosen-key-0123456789"
    assert key_file(settings).read_text().strip() == generated


def test_different_data_dirs_get_different_keys(tmp_path):
    one = load_settings({"TELEMETRY_DATA_DIR": str(tmp_path / "one")})
    two = load_settings({"TELEMETRY_DATA_DIR": str(tmp_path / "two")})
    key_one, key_two = create_app(one).secret_key, create_app(two).secret_key
    assert key_one != key_two
    assert OLD_CONSTANT not in (key_one, key_two)


def test_workers_starting_at_once_agree_on_one_key(settings):
    """Several WSGI workers may build the app at the same moment on a fresh data dir."""
    from dashboard.secret_key import load_or_create_secret_key

    os.makedirs(settings.data_dir, exist_ok=True)
    barrier = threading.Barrier(8)
    keys: list[str] = []

    def start() -> None:
        barrier.wait()
        keys.append(load_or_create_secret_key(settings.data_dir))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(keys) == 8 and len(set(keys)) == 1
    assert key_file(settings).read_text().strip() == keys[0]
    leftovers = [p.name for p in Path(settings.data_dir).iterdir() if "secret" in p.name]
    assert leftovers == ["dashboard-secret-key"]


def test_an_empty_key_file_is_refused_with_a_clear_message(settings):
    path = key_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n")
    with pytest.raises(ConfigError) as caught:
        create_app(settings)
    assert caught.value.setting == "TELEMETRY_DASHBOARD_SECRET_KEY" and str(path) in str(
        caught.value
    )


def test_help_says_what_the_default_secret_key_is(settings):
    text = load_dashboard_config({}).describe(settings.data_dir)
    expected = f"TELEMETRY_DASHBOARD_SECRET_KEY=(unset: random, kept in {key_file(settings)})"
    assert expected in text
    assert OLD_CONSTANT not in text
    explicit = load_dashboard_config({"TELEMETRY_DASHBOARD_SECRET_KEY": "x"})
    assert "TELEMETRY_DASHBOARD_SECRET_KEY=***" in explicit.describe(settings.data_dir)
