"""The health page: graphs from health with alerts listed, and the daily fallback table."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.health import daily_table
from pipeline.db import init_db, make_engine
from pipeline.stats import add_counts
from scheduler.models import utcnow
from tests.support.dashboard import sign_in


@pytest.fixture
def app_users() -> dict[str, bool]:
    return {"ada@example.org": False}


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

    from health.alerts import Alert

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


def test_dead_letter_alert_is_listed_but_not_drawn(app, settings):
    """The watcher's dead-letter incident shows in the alerts table; the chart plots stats only."""
    import dataclasses

    from health.alerts import evaluate
    from pipeline.queues import open_work_queue

    engine, _hour = seed(settings)
    once = dataclasses.replace(settings, queue_max_attempts=1)
    queue = open_work_queue(once)
    queue.send('{"key": "20260302/abc-0001.batch"}')
    queue.release(queue.claim(lease_seconds=60))
    assert queue.claim() is None and len(queue.dead_letters()) == 1
    queue.close()
    assert len(evaluate(engine, utcnow(), once, []).opened) == 1

    client = app.test_client()
    sign_in(client, "ada@example.org")
    html = client.get("/health").get_data(as_text=True)
    table = html[html.index('<table class="alerts">') :]
    assert "dead-lettered batches in sqlite://" in table and "ongoing" in table
    assert "1 batch in the dead-letter queue" in table
    assert "python -m pipeline dead-letters --redrive" in table
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert "dead_letters" not in svg and "dead-lettered" not in svg


def test_daily_fallback_table_counts_channels_and_invalid_rate(settings):
    engine, hour = seed(settings)
    channels, rows = daily_table(engine, hour - dt.timedelta(days=1))
    assert channels == ["nightly", "release"]
    assert rows == [(hour.date().isoformat(), 10, 90, 95, 5, "5.00%")]


def _run(module: str, *args: str, data_dir) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env["TELEMETRY_DATA_DIR"] = str(data_dir)
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_simulated_outages_show_on_the_health_page(app, data_dir):
    """`python -m health.simulate` (60 days, outages) into app.db, the watcher evaluates once,
    then /health draws the traffic and lists one alert per injected outage."""
    # The range ends now, so the traffic depends on the weekday and hour the test runs at; with
    # seed 0 every one of the 168 (weekday, hour) ends gives exactly the injected alerts, also
    # after the watcher's evaluation (checked in-process when this test was written).
    simulated = _run("health.simulate", "--days", "60", "--seed", "0", data_dir=data_dir)
    injected = simulated.stdout.split("injected incidents:", 1)[1].split("detected alerts:")[0]
    # "  drop       beta               2026-10-31 13:00 .. 2026-11-06 13:00  beta stops ..."
    truth = [line.split() for line in injected.strip().splitlines()[1:]]
    assert {row[0] for row in truth} == {"drop", "decline", "error_rate"}
    [stopped] = [row for row in truth if row[0] == "drop"]
    channel, stopped_at = stopped[1], f"{stopped[2]} {stopped[3]}"
    _run("health", "--once", data_dir=data_dir)  # as the watcher does; no duplicates

    client = app.test_client()
    sign_in(client, "ada@example.org")
    response = client.get("/health")
    assert response.status_code == 200
    html = response.get_data(as_text=True)

    svg = html[html.index("<svg") : html.index("</svg>")]
    assert "Submissions per hour by channel" in svg
    assert "No submissions recorded" not in svg
    for name in ("release", "beta", "nightly", "esr"):
        assert f'class="legend">{name}</text>' in svg  # one line per simulated channel
    assert f'data-kind="drop" data-subject="{channel}"' in svg  # the shaded outage band
    assert f"{channel} submissions dropped" in svg  # its label

    table = html[html.index('<table class="alerts">') :].split("</table>", 1)[0]
    rows = [re.findall(r"<td>(.*?)</td>", row, re.S) for row in table.split("</tr>")[1:-1]]
    expected = {
        "drop": "{} submissions dropped",
        "decline": "{} submissions declining",
        "error_rate": "{} error rate up",
    }
    assert sorted(row[0] for row in rows) == sorted(
        expected[kind].format(subject) for kind, subject, *_ in truth
    )  # one alert per injected outage, none twice, no false alarm
    [drop] = [row for row in rows if row[0] == f"{channel} submissions dropped"]
    assert drop[1] == f"{stopped_at}:00 UTC"  # starts when the simulator stopped the channel
    assert drop[2] != "ongoing" and "0 submissions" in drop[3]


def test_pending_parked_and_dead_lettered_batches_are_shown(app, settings):
    from pipeline.records import encode_record
    from pipeline.stores import open_store

    def batch(n: int) -> bytes:
        return b"".join(encode_record(1, "/submit/telemetry/x", {}, b"{}") for _ in range(n))

    pending, parked_1, parked_2 = batch(3), batch(2), batch(5)
    incoming = open_store(settings.incoming_url, create=True)
    incoming.put("20261206/120000-host-1-abc.batch", pending)
    incoming.put("parked/20261206_120000-host-1-abc-p1.tpr", parked_1)
    incoming.put("parked/20261206_120000-host-1-def-p2.tpr", parked_2)
    client = app.test_client()
    sign_in(client, "ada@example.org")
    html = client.get("/health").get_data(as_text=True)

    def row(name: str) -> list[str]:
        cells = re.search(rf'<tr id="backlog-{name}">(.*?)</tr>', html, re.S).group(1)
        return re.findall(r"<td>([\d,]+)</td>", cells)

    # records, batches, bytes
    assert row("pending") == ["3", "1", f"{len(pending):,}"]
    assert row("parked") == ["7", "2", f"{len(parked_1) + len(parked_2):,}"]
    assert row("dead") == ["0"]
    assert html.count("<h1>Pipeline health") == 1
    assert not re.search(r"<text[^>]*>Pipeline health", html)  # no second title in the chart


def test_backlog_counts_are_minimums_past_the_read_budget(settings):
    from health.backlog import read_backlog
    from pipeline.records import encode_record
    from pipeline.stores import open_store

    record = encode_record(1, "/submit/telemetry/x", {}, b"{}")
    incoming = open_store(settings.incoming_url, create=True)
    incoming.put("parked/a-p1.tpr", record * 2)
    incoming.put("parked/b-p1.tpr", record * 4)
    backlog = read_backlog(settings, read_budget=len(record) * 3)
    assert (backlog.parked_batches, backlog.parked_records) == (2, 2)
    assert backlog.records_partial and backlog.problems == []


def test_health_page_counts_unvalidated_and_parked_records_by_reason(app, settings):
    engine, hour = seed(settings)
    add_counts(
        engine, "convert_hist", hour, {("unvalidated_revision_unavailable", "esr", "main"): 3}
    )
    add_counts(engine, "convert_hist", hour, {("revalidated", "esr", "main"): 2})
    add_counts(engine, "convert", hour, {("parked", "esr", "main"): 1})
    client = app.test_client()
    sign_in(client, "ada@example.org")
    html = client.get("/health").get_data(as_text=True)
    assert re.search(r"published unvalidated \(revision unavailable\)</td><td>3<", html)
    assert re.search(r"re-validated later</td><td>2<", html)
    assert re.search(r"parked for a retry</td><td>1<", html)
