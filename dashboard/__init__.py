"""The dashboard: a Flask application factory with one blueprint per area.

`create_app(settings, test_config)` wires the app database (shared with the scheduler), the
blueprints (auth, jobs, public, workers, health, api) and CSRF protection on every form;
also accounts (sign-up and reset by mailed link), the admins' sign-in page, optional OIDC
single sign-on, the sign-in throttle, and security headers on every response.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from dashboard import account, sso, throttle, web_security
from dashboard.config import DashboardConfig, load_dashboard_config, setting_name
from dashboard.secret_key import load_or_create_secret_key
from dashboard.users import dummy_password_hash
from dashboard.workers import PROVIDERS
from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError
from scheduler.config import load_scheduler_config
from scheduler.job_spec import RUNNERS

log = logging.getLogger(__name__)
csrf = CSRFProtect()

FLASK_CONSTANTS: dict[str, Any] = {
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_NAME": "telemetry_session",
    "PERMANENT_SESSION_LIFETIME": dt.timedelta(days=7),
    "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
    "CLOCK": None,  # seconds since the epoch for the sign-in throttle; tests pass their own
}
"""Flask config the dashboard fixes; what an operator may set is dashboard.config's section."""

DEFAULT_CONFIG: dict[str, Any] = {**FLASK_CONSTANTS, **DashboardConfig().flask_config()}
"""Every Flask config key create_app sets before the section's values and `test_config`."""


def create_app(
    settings: Settings | None = None,
    test_config: dict[str, Any] | None = None,
    config: DashboardConfig | None = None,
) -> Flask:
    """Build the dashboard app from the settings and the dashboard's section (both loaded
    from the environment and TELEMETRY_CONFIG when not given); `test_config` overrides Flask
    config keys (tests, embedding)."""
    settings = settings or load_settings()
    config = config or load_dashboard_config()
    if settings.runner not in RUNNERS:  # jobs made here get it; refuse it now, not per form
        raise ConfigError(
            "TELEMETRY_RUNNER", f"must be one of {', '.join(RUNNERS)}, got {settings.runner!r}"
        )
    app = Flask(__name__)
    app.config.update(FLASK_CONSTANTS)
    app.config.update(config.flask_config())
    if test_config:
        app.config.update(test_config)
    if app.config["TRUSTED_PROXIES"]:  # behind N reverse proxies: their X-Forwarded-* count
        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)
    check_worker_config(app.config)  # before anything is written to the data directory
    if not app.config.get("SECRET_KEY"):  # none configured: the data directory's random key
        app.config["SECRET_KEY"] = load_or_create_secret_key(settings.data_dir)
    if app.config["TARBALL_MAX_BYTES"] is None:
        app.config["TARBALL_MAX_BYTES"] = load_scheduler_config().tarball_max_bytes
    # The request limit is a hard guard; the form reports a too-large tarball inline below it.
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = app.config["TARBALL_MAX_BYTES"] + 1024 * 1024

    from dashboard import database

    database.init_app(app, settings)
    csrf.init_app(app)
    web_security.init_app(app)
    sso.init_app(app)
    from dashboard import metrics

    metrics.init_app(app)  # /metrics, /__heartbeat__, /__lbheartbeat__

    from dashboard import api, auth, health, jobs, public, telemetry, tokens, workers_views

    app.register_blueprint(auth.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(public.bp)
    app.register_blueprint(workers_views.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(tokens.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(telemetry.bp)
    csrf.exempt(api.bp)  # the API authenticates every request with a bearer token, not a cookie
    from dashboard import admin

    app.register_blueprint(account.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(sso.bp)
    throttle.init_app(app, app.extensions["telemetry"].engine)  # after the views it limits
    dummy_password_hash()  # made now, so the first unknown-account sign-in costs no extra hash

    from dashboard import error_pages, formatting

    formatting.init_app(app)
    error_pages.init_app(app)
    app.add_url_rule("/", endpoint="index", view_func=jobs.index)
    return app


def check_worker_config(config: Mapping[str, Any]) -> None:
    """Refuse a worker provider that cannot work, at start-up rather than at the first launch."""
    provider = config["WORKER_PROVIDER"]
    if provider not in PROVIDERS:
        raise ConfigError(
            setting_name("WORKER_PROVIDER"), f"must be {' or '.join(PROVIDERS)}, got {provider!r}"
        )
    if provider == "ec2" and not config.get("WORKER_EC2_AMI"):
        raise ConfigError(
            setting_name("WORKER_EC2_AMI"),
            "is not set: the ec2 worker provider needs the AMI its workers boot",
        )
    if provider == "ec2" and not config.get("WORKER_EC2_INSTANCE_PROFILE"):
        raise ConfigError(
            setting_name("WORKER_EC2_INSTANCE_PROFILE"),
            "is not set: ec2 workers need an instance profile that may read the published store",
        )
