"""The health page: graphs from pipeline.health with alerts listed, and the daily fallback table."""

from __future__ import annotations

import datetime as dt

import pytest

from dashboard import create_app
from dashboard.health import daily_table
from pipeline.db import init_db, make_engine
from pipeline.stats import add_counts
from scheduler.models import utcnow
from tests.dashboard_fixtures import add_user, sign_in


@pytest.fixture
def app(settings):
    app = create_app(settings)
    add_user(app, "ada@example.org")
    return app


def seed(settings):
    engine = make_engine(settings.database_url)
    init_db(engine)
    hour = utcnow() - dt.timedelta(days=1)
    add_counts(
        engine,
        "ingest",
        hour,
        {("accepted", "release", "main"): 90, ("accepted", "nightly", "main"): 10},
    )
    add_counts(
        engine,
        "convert",
        hour,
        {("published", "release", "main"): 95, ("bad_json", "release", "main"): 5},
    )
    return engine, hour


def test_health_page_shows_graphs_and_alerts(app, settings):
    from sqlalchemy.orm import Session

    from pipeline.health.alerts import Alert

    engine, hour = seed(settings)
    with Session(engine) as session:
        session.add(
            Alert(
                kind="drop",
                subject="nightly",
                started_at=hour,
                ended_at=None,
                details="0 of 40 expected",
            )
        )
        session.commit()
    client = app.test_client()
    sign_in(client, "ada@example.org")
    html = client.get("/health").get_data(as_text=True)
    assert "<svg" in html
    assert "nightly submissions dropped" in html and "ongoing" in html


def test_daily_fallback_table_counts_channels_and_invalid_rate(settings):
    engine, hour = seed(settings)
    channels, rows = daily_table(engine, hour - dt.timedelta(days=1))
    assert channels == ["nightly", "release"]
    assert rows == [(hour.date().isoformat(), 10, 90, 95, 5, "5.00%")]
