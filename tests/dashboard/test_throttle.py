"""Sign-in throttling: per account and per client address, shared by every dashboard process
(the app database, or Redis), lifted when the window ends; unknown accounts cost the same work;
attempts are recorded for admins."""

from __future__ import annotations

import pytest

from dashboard import create_app
from tests.support.dashboard import PASSWORD, add_user, csrf_token, sign_in


def sign_in_from(client, address: str, email: str, password: str = PASSWORD):
    token = csrf_token(client, "/login")
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": address},
    )


class Clock:
    """A clock the test moves by hand: windows end without sleeping."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def make_app(settings, clock, **config):
    base = {
        "CLOCK": clock,
        "SIGNIN_LIMIT_PER_ACCOUNT": "3 per 15 minutes",
        "SIGNIN_LIMIT_PER_ADDRESS": "5 per 15 minutes",
    }
    return create_app(settings, {**base, **config})


def test_wrong_passwords_lock_the_account_until_the_window_ends(settings, clock):
    app = make_app(settings, clock)
    add_user(app, "ada@example.org")
    client = app.test_client()
    for _ in range(4):  # successful sign-ins use up nothing
        assert sign_in(app.test_client(), "ada@example.org").status_code == 302
    for _ in range(3):
        assert sign_in(client, "ada@example.org", "guess").status_code == 200
    response = sign_in(client, "ada@example.org")  # the right password, too late
    assert response.status_code == 429
    assert "try again in 15 minutes" in response.get_data(as_text=True)
    assert client.get("/jobs").status_code == 302

    clock.now += 10 * 60
    response = sign_in(client, "ada@example.org")
    assert "try again in 5 minutes" in response.get_data(as_text=True)
    clock.now += 5 * 60
    assert sign_in(client, "ada@example.org").status_code == 302
    assert client.get("/jobs").status_code == 200


def test_the_account_limit_holds_whatever_address_the_guesses_come_from(settings, clock):
    app = make_app(settings, clock, SIGNIN_LIMIT_PER_ADDRESS="100 per 15 minutes")
    add_user(app, "ada@example.org")
    for n in range(3):
        sign_in_from(app.test_client(), f"10.0.0.{n}", "ada@example.org", "guess")
    response = sign_in(app.test_client(), "ADA@example.org")
    assert response.status_code == 429


def test_one_address_guessing_many_accounts_is_stopped(settings, clock):
    app = make_app(settings, clock)
    client = app.test_client()
    for n in range(5):
        assert sign_in(client, f"user{n}@example.org", "guess").status_code == 200
    add_user(app, "ada@example.org")
    assert sign_in(client, "ada@example.org").status_code == 429
    assert sign_in_from(app.test_client(), "10.9.9.9", "ada@example.org").status_code == 302


def test_two_dashboard_processes_share_the_counters(settings, clock):
    """Two apps with their own engines on one database: what one counts, the other sees."""
    first, second = make_app(settings, clock), make_app(settings, clock)
    add_user(first, "ada@example.org")
    sign_in(first.test_client(), "ada@example.org", "guess")
    sign_in(second.test_client(), "ada@example.org", "guess")
    sign_in(first.test_client(), "ada@example.org", "guess")
    assert sign_in(second.test_client(), "ada@example.org").status_code == 429


def test_redis_storage_when_configured(settings, clock, redis_url):
    config = {"RATELIMIT_STORAGE_URI": redis_url}
    first, second = make_app(settings, clock, **config), make_app(settings, clock, **config)
    add_user(first, "ada@example.org")
    for app in (first, second, first):
        sign_in(app.test_client(), "ada@example.org", "guess")
    response = sign_in(second.test_client(), "ada@example.org")
    assert response.status_code == 429
    assert "try again in" in response.get_data(as_text=True)


class PasswordChecks:
    """Records every password-hash check sign-in makes (the hash method, not the time)."""

    def __init__(self, monkeypatch) -> None:
        import dashboard.users

        self.methods: list[str] = []
        real = dashboard.users.check_password_hash

        def check(pwhash: str, password: str) -> bool:
            self.methods.append(pwhash.split(":", 1)[0])
            return real(pwhash, password)

        monkeypatch.setattr(dashboard.users, "check_password_hash", check)


def test_unknown_and_known_accounts_run_the_same_password_check(settings, clock, monkeypatch):
    from dashboard import database
    from dashboard.users import create_user

    app = make_app(settings, clock)
    with app.app_context():
        create_user(database.db(), "ada@example.org", PASSWORD)  # the default method: scrypt
    checks = PasswordChecks(monkeypatch)
    known = sign_in(app.test_client(), "ada@example.org", "wrong password")
    assert checks.methods == ["scrypt"]
    unknown = sign_in(app.test_client(), "nobody@example.org", "wrong password")
    assert checks.methods == ["scrypt", "scrypt"]  # a real scrypt hash for nobody, too
    assert known.status_code == unknown.status_code == 200
    assert "Wrong email or password." in unknown.get_data(as_text=True)


def test_a_throttled_attempt_hashes_nothing(settings, clock, monkeypatch):
    app = make_app(settings, clock)
    client = app.test_client()
    for _ in range(3):
        sign_in(client, "nobody@example.org", "guess")
    checks = PasswordChecks(monkeypatch)
    assert sign_in(client, "nobody@example.org", "guess").status_code == 429
    assert checks.methods == []


def test_sign_ins_and_failures_are_shown_to_admins_only(settings, clock):
    app = make_app(settings, clock)
    add_user(app, "root@example.org", admin=True)
    add_user(app, "ada@example.org")
    attacker = app.test_client()
    for _ in range(4):
        sign_in_from(attacker, "10.6.6.6", "ada@example.org", "guess")
    ada = app.test_client()
    sign_in(ada, "ada@example.org", PASSWORD)  # still locked
    assert ada.get("/admin/sign-ins").status_code == 302
    admin = app.test_client()
    assert sign_in(admin, "root@example.org").status_code == 302
    html = admin.get("/admin/sign-ins").get_data(as_text=True)
    assert html.count("refused") >= 3
    assert "throttled" in html
    assert "ada@example.org" in html
    assert 'class="outcome-ok"' in html  # root's own sign-in

    clock.now += 15 * 60
    assert sign_in(ada, "ada@example.org").status_code == 302
    assert ada.get("/admin/sign-ins").status_code == 404  # not an admin


def test_mail_links_are_limited_per_address(settings, clock, smtp_server):
    app = make_app(
        settings, clock, SIGNUP_DOMAINS="example.org", MAIL_LINK_LIMIT_PER_ADDRESS="2 per hour"
    )
    client = app.test_client()
    for n in range(2):
        token = csrf_token(client, "/reset")
        assert client.post("/reset", data={"email": f"x{n}@example.org", "csrf_token": token})
    token = csrf_token(client, "/reset")
    response = client.post("/reset", data={"email": "x@example.org", "csrf_token": token})
    assert response.status_code == 429
    assert "try again in 60 minutes" in response.get_data(as_text=True)


def test_counters_in_postgresql(settings, clock, postgres_url):
    import dataclasses

    app = make_app(dataclasses.replace(settings, database_url=postgres_url), clock)
    add_user(app, "ada@example.org")
    client = app.test_client()
    for _ in range(3):
        assert sign_in(client, "ada@example.org", "guess").status_code == 200
    assert sign_in(client, "ada@example.org").status_code == 429
    clock.now += 15 * 60
    assert sign_in(client, "ada@example.org").status_code == 302


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ({"SIGNIN_LIMIT_PER_ACCOUNT": "lots"}, "TELEMETRY_DASHBOARD_SIGNIN_LIMIT_PER_ACCOUNT"),
        ({"RATELIMIT_STORAGE_URI": "nosuch://x"}, "TELEMETRY_DASHBOARD_RATELIMIT_STORAGE_URI"),
    ],
)
def test_bad_throttle_settings_stop_the_start(settings, config, setting):
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match=setting):
        create_app(settings, config)


def test_a_flood_of_throttled_attempts_is_recorded_once_a_minute(settings, clock):
    from sqlalchemy import func, select

    from dashboard import database
    from dashboard.models import SignInEvent

    app = make_app(settings, clock)
    client = app.test_client()
    for _ in range(10):
        sign_in(client, "ada@example.org", "guess")
    with app.app_context():
        outcomes = dict(
            database.db()
            .execute(select(SignInEvent.outcome, func.count()).group_by(SignInEvent.outcome))
            .all()
        )
    assert outcomes == {"refused": 3, "throttled": 1}
