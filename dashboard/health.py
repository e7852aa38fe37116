"""Pipeline health: submissions per hour by channel and invalid-record rate, with alerts.

The graphs come from the `health` package (server-side SVG); where it is not
installed the page shows the hourly counts from `pipeline.stats` as a table.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from flask import Blueprint, render_template
from markupsafe import Markup

from dashboard import database
from dashboard.auth import login_required
from pipeline import outcomes as oc
from pipeline.stats import read_counts
from scheduler.models import utcnow

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)
DAYS = 60


def _graphs(engine) -> Markup | None:
    try:
        from health.report import health_svg
    except ImportError:
        return None
    return Markup(
        health_svg(engine, days=DAYS)
    )  # SVG built server-side from numbers, not user text


def _alerts(engine, since: dt.datetime) -> list | None:
    try:
        from health.alerts import list_alerts
    except ImportError:
        return None
    return list(list_alerts(engine, since))


def _backlog():
    try:
        from health.backlog import read_backlog
    except ImportError:
        return None
    return read_backlog(database.settings())


def daily_table(engine, since: dt.datetime) -> tuple[list[str], list[tuple]]:
    """Rows (day, accepted per channel..., published, invalid, invalid %) for the fallback table."""
    accepted: dict[tuple[dt.date, str], int] = defaultdict(int)
    converted: dict[dt.date, list[int]] = defaultdict(lambda: [0, 0])
    channels: set[str] = set()
    for hour, source, outcome, channel, _doc_type, count in read_counts(engine, since):
        day = hour.date()
        if source == oc.SOURCE_INGEST:
            accepted[(day, channel)] += count
            channels.add(channel)
        elif source == oc.SOURCE_CONVERT:
            converted[day][0 if outcome == oc.PUBLISHED else 1] += count
    ordered = sorted(channels)
    days = sorted({d for d, _ in accepted} | set(converted), reverse=True)
    rows = []
    for day in days:
        good, bad = converted[day]
        rate = f"{100 * bad / (good + bad):.2f}%" if good + bad else "—"
        rows.append((day.isoformat(), *[accepted[(day, c)] for c in ordered], good, bad, rate))
    return ordered, rows


HELD_BACK_DAYS = 7


def held_back(engine, since: dt.datetime) -> list[tuple[str, int]]:
    """(what, count) of records convert published unvalidated, re-validated or parked since
    `since`, by reason: the records whose histograms were not checked against their revision."""
    totals: dict[str, int] = defaultdict(int)
    for _hour, source, outcome, _channel, _doc_type, count in read_counts(engine, since):
        reason = oc.unvalidated_reason(outcome)
        if source == oc.SOURCE_CONVERT_HIST and reason is not None:
            totals[f"published unvalidated ({reason.replace('_', ' ')})"] += count
        elif source == oc.SOURCE_CONVERT_HIST and outcome == oc.REVALIDATED:
            totals["re-validated later"] += count
        elif source == oc.SOURCE_CONVERT and outcome == oc.PARKED:
            totals["parked for a retry"] += count
    return sorted(totals.items())


@bp.route("/health")
@login_required
def show():
    engine = database.state().engine
    since = utcnow() - dt.timedelta(days=DAYS)
    graphs = _graphs(engine)
    alerts = _alerts(engine, since)
    channels, rows = daily_table(engine, since) if graphs is None else ([], [])
    return render_template(
        "health.html",
        graphs=graphs,
        alerts=alerts,
        backlog=_backlog(),
        channels=channels,
        rows=rows,
        days=DAYS,
        held_back=held_back(engine, utcnow() - dt.timedelta(days=HELD_BACK_DAYS)),
        held_back_days=HELD_BACK_DAYS,
    )
