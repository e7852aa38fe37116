"""Per-app database engine and per-request sessions.

The engine lives in `app.extensions["telemetry"]`; each request gets one SQLAlchemy session in
`flask.g`, closed when the request ends, so a failed request never leaves a half-done change.
"""

from __future__ import annotations

import dataclasses

from flask import Flask, current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

import dashboard.models  # noqa: F401  (declares the dashboard tables on Base)
import pipeline.stats  # noqa: F401  (the health page reads hourly_stats)
import scheduler.models  # noqa: F401  (jobs and runs)

try:  # the health package declares the alerts table the health page reads
    import health.alerts  # noqa: F401
except ImportError:  # pragma: no cover - older checkouts without health
    pass
from pipeline.config import Settings
from pipeline.db import init_db, make_engine, session_factory


@dataclasses.dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker


def init_app(app: Flask, settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    init_db(engine)  # migrates (pipeline/migrations) under the start-up lock
    app.extensions["telemetry"] = AppState(settings, engine, session_factory(engine))
    app.teardown_appcontext(_close_session)


def state() -> AppState:
    return current_app.extensions["telemetry"]


def settings() -> Settings:
    return state().settings


def db() -> Session:
    """The request's session (created on first use)."""
    if "db_session" not in g:
        g.db_session = state().sessions()
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
