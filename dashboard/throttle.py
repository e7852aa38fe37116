"""Sign-in throttling with Flask-Limiter: failed attempts per account and per client address.

Counters must be shared by every dashboard process (several WSGI workers, several hosts), so
the default storage is the app database itself (`appdb://`, a fixed-window counter table,
`AppDatabaseStorage` below: the `limits` library has no SQL storage of its own). Operators
with Redis set `TELEMETRY_DASHBOARD_RATELIMIT_STORAGE_URI=redis://host:6379/1` (any storage URI
the `limits` library knows). `memory://` counts per process only and is meant for tests.

Only failures count (`deduct_when`): a user who signs in correctly is never slowed down, and
an attacker guessing one account is stopped after SIGNIN_LIMIT_PER_ACCOUNT tries whatever
address they come from, and a client address after SIGNIN_LIMIT_PER_ADDRESS tries whatever
accounts it guesses. A throttled request is answered before any password is hashed, so a
flood costs no scrypt work. The answer says when to try again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, request
from flask_limiter import Limiter, RequestLimit
from flask_limiter.util import get_remote_address
from limits import parse_many
from limits.errors import ConfigurationError
from limits.storage import Storage
from sqlalchemy import Engine, case, delete, select
from sqlalchemy.exc import SQLAlchemyError

from dashboard.config import DashboardConfig, setting_name
from dashboard.models import RateLimitCounter
from dashboard.users import normalise_email
from pipeline.db import dialect_insert
from pipeline.errors import ConfigError


class AppDatabaseStorage(Storage):
    """A `limits` fixed-window storage on the app database (SQLite or PostgreSQL).

    Options: `engine` (the app's SQLAlchemy engine) and `clock` (seconds since the epoch;
    tests pass a controllable one to move through windows without sleeping).
    """

    STORAGE_SCHEME = ["appdb"]

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        engine: Engine | None = None,
        clock: Callable[[], float] = time.time,
        **options: Any,
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        if engine is None:
            raise ValueError("appdb:// needs the app's engine (storage option 'engine')")
        self.engine = engine
        self.clock = clock

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add `amount` in the current window of `key` (a new window when the old one ended);
        one atomic upsert, so processes counting at once never lose an attempt."""
        now = self.clock()
        table = RateLimitCounter.__table__
        insert = dialect_insert(self.engine, RateLimitCounter)
        expired = table.c.expires_at <= now
        statement = insert.values(key=key, count=amount, expires_at=now + expiry)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "count": case((expired, amount), else_=table.c.count + amount),
                "expires_at": case((expired, now + expiry), else_=table.c.expires_at),
            },
        ).returning(table.c.count)
        with self.engine.begin() as conn:
            return int(conn.execute(statement).scalar_one())

    def _row(self, key: str) -> tuple[int, float] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(RateLimitCounter.count, RateLimitCounter.expires_at).where(
                    RateLimitCounter.key == key
                )
            ).first()
        if row is None or row.expires_at <= self.clock():
            return None
        return row.count, row.expires_at

    def get(self, key: str) -> int:
        row = self._row(key)
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return row[1] if row else self.clock()

    def check(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self.engine.begin() as conn:
            return conn.execute(delete(RateLimitCounter)).rowcount

    def clear(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(RateLimitCounter).where(RateLimitCounter.key == key))


def client_address() -> str:
    return get_remote_address() or "unknown"


def signin_account_key() -> str:
    """The account a sign-in names (known or not: unknown ones are throttled alike)."""
    return "account:" + normalise_email(request.form.get("email", ""))[:320]


def failed(response) -> bool:
    """Only answers that are not a successful sign-in (a redirect) use up the allowance."""
    return response.status_code != 302


def init_app(app: Flask, engine: Engine) -> Limiter:
    """Attach a Limiter to `app` and throttle the sign-in and mail-sending views."""
    for key, value in DashboardConfig().flask_config().items():  # an app made elsewhere
        app.config.setdefault(key, value)
    options = dict(app.config.get("RATELIMIT_STORAGE_OPTIONS") or {})
    if app.config["RATELIMIT_STORAGE_URI"].startswith("appdb"):
        options.setdefault("engine", engine)
        if app.config.get("CLOCK"):
            options.setdefault("clock", app.config["CLOCK"])
    app.config["RATELIMIT_STORAGE_OPTIONS"] = options
    check_config(app.config)
    try:
        limiter = Limiter(key_func=client_address, app=app)
    except ConfigurationError as exc:
        raise ConfigError(setting_name("RATELIMIT_STORAGE_URI"), str(exc)) from exc
    per_account = limiter.limit(
        lambda: current_app.config["SIGNIN_LIMIT_PER_ACCOUNT"],
        key_func=signin_account_key,
        methods=["POST"],
        deduct_when=failed,
        scope="sign-in-account",
    )
    per_address = limiter.limit(
        lambda: current_app.config["SIGNIN_LIMIT_PER_ADDRESS"],
        key_func=client_address,
        methods=["POST"],
        deduct_when=failed,
        scope="sign-in-address",
    )
    mail_links = limiter.limit(
        lambda: current_app.config["MAIL_LINK_LIMIT_PER_ADDRESS"],
        key_func=client_address,
        methods=["POST"],
        scope="mail-links",
    )
    views = app.view_functions
    views["auth.login"] = per_account(per_address(views["auth.login"]))
    for endpoint in ("account.signup", "account.forgot_password"):
        views[endpoint] = mail_links(views[endpoint])
    app.extensions["telemetry_limiter"] = limiter
    return limiter


def check_config(config) -> None:
    """Refuse a limit the library cannot read at start-up, not at the first sign-in."""
    for key in (
        "SIGNIN_LIMIT_PER_ACCOUNT",
        "SIGNIN_LIMIT_PER_ADDRESS",
        "MAIL_LINK_LIMIT_PER_ADDRESS",
    ):
        try:
            parse_many(str(config[key]))
        except ValueError as exc:
            raise ConfigError(
                setting_name(key), f"{config[key]!r} is not a limit like '10 per 15 minutes'"
            ) from exc


def retry_after_seconds(limit: RequestLimit | None, now: float) -> float:
    if limit is None:
        return 60.0
    return max(1.0, limit.window.reset_time - now)  # reset_at would add a second


def try_again_message(seconds: float) -> str:
    """'try again in N minutes' (rounded up: never invites a retry that is still refused)."""
    minutes = max(1, math.ceil(seconds / 60))
    return f"try again in {minutes} minute{'s' if minutes != 1 else ''}"


def current_retry_after() -> float:
    limiter: Limiter = current_app.extensions["telemetry_limiter"]
    clock = current_app.config.get("CLOCK") or time.time
    return retry_after_seconds(limiter.current_limit, clock())
