"""Dead-lettered batches as a health incident: the real SQLite work queue, a real SMTP server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import subprocess
import sys

import pytest

from health import alerts
from health.anomaly import HOUR, Incident
from health.dead_letters import KIND_DEAD_LETTERS, queue_subject
from pipeline.db import init_db, make_engine
from pipeline.queues import open_work_queue
from tests.support.servers import free_port

NOW = dt.datetime(2026, 3, 2, 10, 20, tzinfo=dt.UTC)
BATCH = '{"key": "20260302/abc-0001.batch", "records": 3, "bytes": 512}'


@pytest.fixture
def mail(settings, smtp_server):
    """Settings mailing through the test SMTP server, dead-lettering after two failed claims."""
    return dataclasses.replace(
        settings,
        smtp_url=smtp_server.url,
        public_base_url="http://health.example",
        queue_max_attempts=2,
    )


@pytest.fixture
def engine(settings):
    made = make_engine(settings.database_url)
    init_db(made)
    yield made
    made.dispose()


@pytest.fixture
def queue(mail):
    opened = open_work_queue(mail)
    yield opened
    opened.close()


def dead_letter(queue, body: str) -> None:
    """Send `body` and claim it max_attempts times without an ack, until it is dead-lettered."""
    queue.send(body)
    while (message := queue.claim(lease_seconds=60)) is not None:
        assert queue.release(message)
    assert body in [m.body for m in queue.dead_letters()]


def test_dead_letters_open_one_alert_with_one_mail_and_recover_with_one_mail(
    engine, mail, queue, smtp_server
):
    recipients = ["ops@example.org"]
    assert alerts.evaluate(engine, NOW, mail, recipients).opened == []
    dead_letter(queue, BATCH)

    opened = alerts.evaluate(engine, NOW + HOUR, mail, recipients)
    assert len(opened.opened) == 1 and opened.mails_sent == 1
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "ops@example.org"
    assert "ALERT" in message["Subject"] and "dead-lettered batches" in message["Subject"]
    body = message.get_payload(decode=True).decode()
    assert "what:  dead-lettered batches" in body
    assert f"where: {queue_subject(mail.queue_url)}" in body
    assert "since: 2026-03-02 11:20" in body and "state: ongoing" in body
    assert {"expected: 0 dead-lettered batches", "seen:     1"} <= set(body.splitlines())
    assert "`python -m pipeline dead-letters`" in body
    assert "`python -m pipeline dead-letters --redrive`" in body
    assert "http://health.example/health" in body

    # still dead on the next passes, one more batch joining: updated, no second mail
    dead_letter(queue, BATCH.replace("0001", "0002"))
    for later in (NOW + 2 * HOUR, NOW + 3 * HOUR):
        again = alerts.evaluate(engine, later, mail, recipients)
        assert again.opened == [] and again.closed == [] and again.mails_sent == 0
        assert again.updated == opened.opened
    assert len(smtp_server.messages) == 1
    [alert] = alerts.list_alerts(engine, NOW)
    assert alert.ongoing and alert.seen == 2 and alert.expected == 0

    assert queue.redrive_all() == 2
    while (message := queue.claim(lease_seconds=60)) is not None:
        assert queue.ack(message)
    recovered = alerts.evaluate(engine, NOW + 4 * HOUR, mail, recipients)
    assert recovered.closed == opened.opened and recovered.mails_sent == 1
    messages = smtp_server.wait_for(2)
    assert "RECOVERED" in messages[1]["Subject"]
    assert "dead-lettered batches" in messages[1]["Subject"]
    recovery = messages[1].get_payload(decode=True).decode()
    assert "recovered at 2026-03-02 14:20" in recovery
    assert "seen:     2 at the last check that found any" in recovery.splitlines()

    assert alerts.evaluate(engine, NOW + 5 * HOUR, mail, recipients).mails_sent == 0
    assert len(smtp_server.messages) == 2
    [alert] = alerts.list_alerts(engine, NOW)
    assert (alert.kind, alert.subject) == (KIND_DEAD_LETTERS, queue_subject(mail.queue_url))
    assert alert.started_at == dt.datetime(2026, 3, 2, 11, 20)
    assert alert.ended_at == dt.datetime(2026, 3, 2, 14, 20)
    assert alert.notified_open and alert.notified_closed


def test_dead_lettered_again_after_recovery_is_a_new_incident(engine, mail, queue, smtp_server):
    dead_letter(queue, BATCH)
    first = alerts.evaluate(engine, NOW, mail, ["ops@example.org"])
    queue.redrive_all()
    assert alerts.evaluate(engine, NOW + HOUR, mail, ["ops@example.org"]).closed == first.opened
    dead_letter(queue, BATCH)  # the cause was not fixed: dead-lettered again
    second = alerts.evaluate(engine, NOW + 2 * HOUR, mail, ["ops@example.org"])
    assert len(second.opened) == 1 and second.opened != first.opened
    subjects = [m["Subject"] for m in smtp_server.wait_for(3)]
    assert [s.split(":")[0] for s in subjects] == [
        "[telemetry] ALERT",
        "[telemetry] RECOVERED",
        "[telemetry] ALERT",
    ]


def test_unreadable_queue_skips_the_check_and_keeps_the_open_alert(
    engine, mail, queue, smtp_server, caplog
):
    dead_letter(queue, BATCH)
    opened = alerts.evaluate(engine, NOW, mail, ["ops@example.org"])
    assert len(opened.opened) == 1
    unreachable = dataclasses.replace(
        mail, queue_url=f"redis://:hunter2@127.0.0.1:{free_port()}/0?queue=telemetry"
    )

    with caplog.at_level(logging.WARNING, logger="health"):
        skipped = alerts.evaluate(engine, NOW + HOUR, unreachable, ["ops@example.org"])

    assert skipped.closed == [] and skipped.mails_sent == 0  # no verdict is not a recovery
    [line] = [r.getMessage() for r in caplog.records if "dead-letter check" in r.getMessage()]
    assert "TELEMETRY_QUEUE_URL=redis://:***@127.0.0.1" in line and "hunter2" not in line
    [alert] = alerts.list_alerts(engine, NOW)
    assert alert.ongoing
    assert len(smtp_server.wait_for(1)) == 1


def test_simulator_style_reconciliation_leaves_dead_letter_alerts_alone(engine):
    start = NOW.replace(tzinfo=None)
    dead = Incident(KIND_DEAD_LETTERS, "sqlite:///q.db", start, None, start, 0.0, 3.0, "3")
    alerts.record_incidents(engine, [dead], start)
    assert alerts.record_incidents(engine, [], start + HOUR).closed == []  # detectors' kinds only
    assert alerts.list_alerts(engine, start)[0].ongoing


def test_long_queue_url_is_shortened_to_the_subject_column_without_its_password():
    assert queue_subject("sqs://telemetry-incoming") == "sqs://telemetry-incoming"
    assert queue_subject("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    long = "sqlite:///" + "/very/long/directory" * 5 + "/queue.db"
    short = queue_subject(long)
    assert len(short) <= 64 and short.startswith("sqlite://…/") and short.endswith("/queue.db")
    assert long.endswith(short.removeprefix("sqlite://…"))


def run_watcher(data_dir, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "health", "--once"],
        env={"TELEMETRY_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_watcher_stores_a_dead_letter_alert(data_dir, engine, queue):
    dead_letter(queue, BATCH)
    result = run_watcher(data_dir, TELEMETRY_QUEUE_MAX_ATTEMPTS="2")
    assert result.returncode == 0, result.stderr
    [alert] = alerts.list_alerts(engine, NOW)
    assert alert.kind == KIND_DEAD_LETTERS and alert.ongoing and alert.seen == 1
    assert "1 dead letters" in result.stderr


def test_watcher_survives_an_unreachable_queue_url(data_dir):
    result = run_watcher(
        data_dir, TELEMETRY_QUEUE_URL=f"redis://127.0.0.1:{free_port()}/0?queue=telemetry"
    )
    assert result.returncode == 0, result.stderr
    skipped = [line for line in result.stderr.splitlines() if "dead-letter check skipped" in line]
    assert len(skipped) == 1 and "TELEMETRY_QUEUE_URL=redis://127.0.0.1" in skipped[0]
    assert "Traceback" not in result.stderr
    assert "unknown dead letters" in result.stderr  # the rest of the evaluation still ran
