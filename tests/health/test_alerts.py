"""Stored alerts and their mail, through the real hourly_stats table and a real SMTP server."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import event

from health import alerts, simulate
from health.anomaly import DAY, HOUR, Incident
from pipeline.db import init_db, make_engine
from pipeline.stats import add_counts
from tests.support.servers import free_port

END = dt.datetime(2026, 11, 23, 18)
START = dt.datetime(2026, 1, 5)  # a Monday


def _unsynced_engine(path):
    """An engine on `path` that skips fsync: these tests write thousands of tiny commits."""
    engine = make_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", lambda conn, _record: conn.execute("PRAGMA synchronous=OFF"))
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    """The app database on SQLite and on a fresh database of the tests' own PostgreSQL server."""
    if request.param == "sqlite":
        made = _unsynced_engine(tmp_path / "app.db")
    else:
        made = make_engine(request.getfixturevalue("postgres_url"))
    try:
        init_db(made)
        yield made
    finally:
        made.dispose()


@pytest.fixture(scope="module")
def beta_outage(tmp_path_factory):
    """A database holding simulated traffic from 15 days before to 2 days after the beta stop.

    Two weeks are the least history the detectors judge with. Module-scoped because writing
    23 days of stats through add_counts takes a while; each test works on a copy.
    """
    simulation = simulate.generate(days=60, seed=3, scenario="outages", end=END)
    beta = next(t for t in simulation.truth if t.subject == "beta")
    first, cutoff = beta.start - 15 * DAY, beta.end + 2 * DAY
    path = tmp_path_factory.mktemp("beta") / "app.db"
    engine = _unsynced_engine(path)
    init_db(engine)
    for hour, source, counts in simulation.counts:
        if first <= hour < cutoff:
            add_counts(engine, source, hour, counts)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # the copy must hold everything
    engine.dispose()
    return path, beta


@pytest.fixture
def outage_engine(beta_outage, tmp_path):
    import shutil

    path, beta = beta_outage
    copy = tmp_path / "app.db"
    shutil.copy(path, copy)
    engine = _unsynced_engine(copy)
    init_db(engine)
    yield engine, beta
    engine.dispose()


def _mail_settings(settings, smtp_url):
    return dataclasses.replace(settings, smtp_url=smtp_url, public_base_url="http://health.example")


def test_one_mail_when_an_incident_opens_and_one_when_it_recovers(
    outage_engine, settings, smtp_server
):
    engine, beta = outage_engine
    mail = _mail_settings(settings, smtp_server.url)
    recipients = ["ops@example.org"]

    before = alerts.evaluate(engine, beta.start, mail, recipients)
    assert before.opened == [] and smtp_server.messages == []

    opened = alerts.evaluate(
        engine, beta.start + 6 * HOUR + 20 * dt.timedelta(minutes=1), mail, recipients
    )
    assert len(opened.opened) == 1 and opened.mails_sent == 1
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "ops@example.org"
    assert "ALERT" in message["Subject"] and "beta submissions dropped" in message["Subject"]
    body = message.get_payload(decode=True).decode()
    assert "where: beta" in body and "since: " + f"{beta.start:%Y-%m-%d %H:%M}" in body
    assert "state: ongoing" in body and "http://health.example/health" in body

    for later in (beta.start + 6 * HOUR + 30 * dt.timedelta(minutes=1), beta.start + 2 * DAY):
        again = alerts.evaluate(engine, later, mail, recipients)
        assert again.opened == [] and again.mails_sent == 0
    assert len(smtp_server.messages) == 1

    recovered = alerts.evaluate(engine, beta.end + 8 * HOUR, mail, recipients)
    assert recovered.mails_sent == 1
    messages = smtp_server.wait_for(2)
    assert "RECOVERED" in messages[1]["Subject"] and "beta" in messages[1]["Subject"]
    assert (
        f"recovered at {beta.end:%Y-%m-%d %H:%M}" in messages[1].get_payload(decode=True).decode()
    )

    for later in (beta.end + 9 * HOUR, beta.end + 2 * DAY):
        assert alerts.evaluate(engine, later, mail, recipients).mails_sent == 0
    assert len(smtp_server.messages) == 2

    [alert] = alerts.list_alerts(engine, beta.start - DAY)
    assert (alert.kind, alert.subject) == ("drop", "beta")
    assert alert.started_at == beta.start and alert.ended_at == beta.end
    assert alert.notified_open and alert.notified_closed
    assert alert.seen == 0 and alert.expected > 10_000


def test_every_recipient_gets_each_mail_once(outage_engine, settings, smtp_server):
    engine, beta = outage_engine
    mail = _mail_settings(settings, smtp_server.url)
    recipients = ["a@example.org", "b@example.org"]
    alerts.evaluate(engine, beta.start + 8 * HOUR, mail, recipients)
    alerts.evaluate(engine, beta.start + 9 * HOUR, mail, recipients)
    messages = smtp_server.wait_for(2)
    assert sorted(m["To"] for m in messages) == recipients
    assert len(smtp_server.messages) == 2


def test_failed_mail_is_sent_on_the_next_evaluation(outage_engine, settings, smtp_server):
    engine, beta = outage_engine
    closed_port = _mail_settings(settings, f"smtp://127.0.0.1:{free_port()}")
    failed = alerts.evaluate(engine, beta.start + 8 * HOUR, closed_port, ["ops@example.org"])
    assert len(failed.opened) == 1 and failed.mails_sent == 0 and failed.mail_failures == 1
    [alert] = alerts.list_alerts(engine, beta.start)
    assert not alert.notified_open

    retried = alerts.evaluate(
        engine,
        beta.start + 9 * HOUR,
        _mail_settings(settings, smtp_server.url),
        ["ops@example.org"],
    )
    assert retried.opened == [] and retried.mails_sent == 1
    assert "ALERT" in smtp_server.wait_for(1)[0]["Subject"]


def test_without_recipients_nothing_is_owed_later(outage_engine, settings, smtp_server):
    engine, beta = outage_engine
    mail = _mail_settings(settings, smtp_server.url)
    assert alerts.evaluate(engine, beta.start + 8 * HOUR, mail, []).mails_sent == 0
    assert alerts.evaluate(engine, beta.start + 9 * HOUR, mail, ["ops@example.org"]).mails_sent == 0
    assert smtp_server.messages == []


def test_incomplete_current_hour_is_not_judged(engine, settings):
    weeks = 15 * 24
    for index in range(weeks):
        add_counts(
            engine, "ingest", START + index * HOUR, {("accepted", "esr", "saved-session"): 100}
        )
    now = START + weeks * HOUR
    # the current hour has only just begun: almost nothing counted yet
    add_counts(engine, "ingest", now, {("accepted", "esr", "saved-session"): 2})
    assert alerts.evaluate(engine, now + 10 * dt.timedelta(minutes=1), settings, []).opened == []
    # hours that are over and stayed empty are an outage
    result = alerts.evaluate(engine, now + 4 * HOUR + dt.timedelta(minutes=5), settings, [])
    [alert] = alerts.list_alerts(engine, START)
    assert result.opened == [alert.id]
    assert (alert.kind, alert.subject, alert.started_at, alert.ended_at) == (
        "drop",
        "esr",
        now,
        None,
    )
    assert alert.ongoing and alert.title == "esr submissions dropped"


def test_alert_no_longer_detected_is_closed(engine):
    incident = Incident(
        "drop", "beta", START, None, START + HOUR, 100.0, 0.0, "beta: 0 submissions"
    )
    first = alerts.record_incidents(engine, [incident], START + 2 * HOUR)
    assert len(first.opened) == 1
    second = alerts.record_incidents(engine, [], START + 3 * HOUR)
    assert second.closed == first.opened
    [alert] = alerts.list_alerts(engine, START)
    assert alert.ended_at == START + 3 * HOUR and "no longer detected" in alert.details


def test_reopened_alert_owes_mail_again(engine):
    ongoing = Incident("drop", "beta", START, None, START + HOUR, 100.0, 0.0, "x")
    alerts.record_incidents(engine, [ongoing], START + 2 * HOUR, notified=True)
    closed = dataclasses.replace(ongoing, until=START + 3 * HOUR)
    alerts.record_incidents(engine, [closed], START + 4 * HOUR, notified=True)
    alerts.record_incidents(engine, [ongoing], START + 5 * HOUR)
    [alert] = alerts.list_alerts(engine, START)
    assert alert.ended_at is None and not alert.notified_open and not alert.notified_closed


def test_list_alerts_leaves_out_alerts_that_ended_before_since(engine):
    old = Incident("drop", "esr", START, START + 5 * HOUR, START + HOUR, 1.0, 0.0, "old")
    new = Incident(
        "error_rate", "bad_json", START + DAY, START + DAY + 3 * HOUR, START + DAY, 0.01, 0.2, "new"
    )
    ongoing = Incident("drop", "beta", START + 2 * DAY, None, START + 2 * DAY, 9.0, 0.0, "now")
    alerts.record_incidents(engine, [old, new, ongoing], START + 3 * DAY)
    listed = alerts.list_alerts(engine, START + 12 * HOUR)
    assert [a.subject for a in listed] == ["beta", "bad_json"]
