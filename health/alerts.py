"""Stored alerts: run the detectors over the hourly stats, keep one row per incident, mail once.

`evaluate()` is meant to run every hour (scheduler, cron, or the one-command runner). Each run
reads the stats of the last `LOOKBACK` plus the baselines' history, detects incidents on
complete hours only (the current hour is still filling up and would look like a drop), and
reconciles them with the `alerts` table: a detected incident updates the stored alert of the
same kind and subject it overlaps, or inserts a new one; a stored open alert that is no longer
detected is closed. Mail is deduplicated by the `notified_open` / `notified_closed` flags:
one message when an incident opens, one when it recovers, none on re-evaluation. A failed
send leaves the flag unset, so the next evaluation retries it.

Besides the detectors' incidents, each run reads the work queue's dead-letter count
(`health.dead_letters`): dead letters are an incident of kind `dead_letters`,
reconciled, stored and mailed the same way; so are incoming batches older than
TELEMETRY_STALE_INCOMING_MINUTES (`health.stale_incoming`, kind `stale_incoming`). When the queue cannot be read, that kind is not
judged on this run: its open alert stays open rather than being taken for a recovery.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import Boolean, DateTime, Engine, Float, Integer, String, Text, delete, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from health.anomaly import (
    DEFAULT_SETTINGS,
    HOUR,
    KINDS,
    DetectorSettings,
    Incident,
    StatsFrame,
    detect_all,
)
from health.dead_letters import (
    KIND_DEAD_LETTERS,
    WHAT,
    dead_letter_incident,
    read_dead_letter_count,
)
from health.stale_incoming import (
    KIND_STALE_INCOMING,
    read_stale_incoming,
    stale_incoming_incident,
)
from health.stale_incoming import WHAT as WHAT_STALE
from pipeline.db import Base
from pipeline.errors import PipelineError
from pipeline.mail import send_mail
from pipeline.stats import hour_of, read_counts

log = logging.getLogger(__name__)

LOOKBACK = dt.timedelta(days=14)  # evaluated range; long enough to confirm a slow decline


class Alert(Base):
    """One incident: `ended_at` is None while it is ongoing."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    detected_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    expected: Mapped[float] = mapped_column(Float, default=0.0)
    seen: Mapped[float] = mapped_column(Float, default=0.0)
    details: Mapped[str] = mapped_column(Text, default="")
    notified_open: Mapped[bool] = mapped_column(Boolean, default=False)
    notified_closed: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def ongoing(self) -> bool:
        return self.ended_at is None

    @property
    def title(self) -> str:
        """Short human label, e.g. `beta submissions dropped`."""
        return describe_kind(self.kind, self.subject)

    def __repr__(self) -> str:
        return f"Alert(id={self.id}, {self.kind} {self.subject} {self.started_at}..{self.ended_at})"


def describe_kind(kind: str, subject: str) -> str:
    if kind == KIND_DEAD_LETTERS:
        return f"{WHAT} in {subject}"
    if kind == KIND_STALE_INCOMING:
        return f"{WHAT_STALE} in {subject}"
    if kind == "drop":
        return f"{subject} submissions dropped"
    if kind == "decline":
        return f"{subject} submissions declining"
    if subject == "invalid":
        return "invalid-record rate up"
    return f"{subject} error rate up"


@dataclasses.dataclass
class Evaluation:
    """What one `evaluate()` call did (ids of alerts), for logs and tests."""

    opened: list[int] = dataclasses.field(default_factory=list)
    updated: list[int] = dataclasses.field(default_factory=list)
    closed: list[int] = dataclasses.field(default_factory=list)
    mails_sent: int = 0
    mail_failures: int = 0


def _matches(alert: Alert, incident: Incident) -> bool:
    """Same kind and subject, and the intervals overlap (an open alert reaches to the future)."""
    if alert.kind != incident.kind or alert.subject != incident.subject:
        return False
    alert_end = alert.ended_at or dt.datetime.max
    incident_end = incident.until or dt.datetime.max
    return alert.started_at < incident_end and incident.since < alert_end


def record_incidents(
    engine: Engine,
    incidents: Sequence[Incident],
    now: dt.datetime,
    notified: bool = False,
    judged: Mapping[str, dt.datetime] | None = None,
) -> Evaluation:
    """Reconcile detected incidents with the stored alerts (insert, update, close).

    `notified=True` marks what changes here as already mailed (the simulator's history should
    not produce a burst of mail later). A closed alert that is detected as ongoing again (late
    stats) is reopened and owes both mails again. Stored open alerts that no incident matches
    any more are closed, if their kind was judged: `judged` maps each kind judged here to the
    moment it was judged at, where its alerts close (default: the detectors' kinds, at `now`).
    Open alerts of other kinds (dead letters while the queue could not be read) stay open.
    """
    now = _naive(now)
    closing = (
        dict.fromkeys(KINDS, now)
        if judged is None
        else {kind: _naive(moment) for kind, moment in judged.items()}
    )
    result = Evaluation()
    with Session(engine, expire_on_commit=False) as session:
        stored = list(session.scalars(select(Alert)))
        matched: set[int] = set()
        for incident in incidents:
            candidates = [a for a in stored if _matches(a, incident)]
            candidates.sort(key=lambda a: (a.ended_at is not None, a.started_at))
            if candidates:
                alert = candidates[0]
                was_open = alert.ended_at is None
                if not was_open and incident.until is None:
                    alert.notified_open = alert.notified_closed = notified
                    log.info("alert %s reopened: %s", alert.id, incident.details)
                alert.started_at = min(alert.started_at, incident.since)
                alert.ended_at = incident.until
                alert.expected, alert.seen, alert.details = (
                    incident.expected,
                    incident.seen,
                    incident.details,
                )
                if alert.detected_at is None or incident.detected_at < alert.detected_at:
                    alert.detected_at = incident.detected_at
                session.flush()
                (result.closed if was_open and incident.until else result.updated).append(alert.id)
            else:
                alert = Alert(
                    kind=incident.kind,
                    subject=incident.subject,
                    started_at=incident.since,
                    ended_at=incident.until,
                    detected_at=incident.detected_at,
                    expected=incident.expected,
                    seen=incident.seen,
                    details=incident.details,
                    notified_open=notified,
                    notified_closed=notified and incident.until is not None,
                )
                session.add(alert)
                stored.append(alert)
                session.flush()
                result.opened.append(alert.id)
                log.info("alert %s opened: %s", alert.id, incident.details)
            matched.add(alert.id)
        for alert in stored:
            if alert.ended_at is None and alert.id not in matched and alert.kind in closing:
                alert.ended_at = max(closing[alert.kind], alert.started_at)
                alert.details += " (no longer detected)"
                alert.notified_closed = alert.notified_closed or notified
                result.closed.append(alert.id)
                log.info("alert %s closed: no longer detected", alert.id)
        session.commit()
    return result


def _subject_line(alert: Alert, recovered: bool) -> str:
    if recovered:
        return f"[telemetry] RECOVERED: {alert.title} ({alert.started_at:%Y-%m-%d %H:%M} to {alert.ended_at:%Y-%m-%d %H:%M} UTC)"
    return f"[telemetry] ALERT: {alert.title} since {alert.started_at:%Y-%m-%d %H:%M} UTC"


def _body(alert: Alert, recovered: bool, settings) -> str:
    what = alert.kind
    if alert.kind == "error_rate":
        numbers = f"expected: {alert.expected:.2%} of converted records\nseen:     {alert.seen:.2%}"
    elif alert.kind == KIND_DEAD_LETTERS:
        what = WHAT
        numbers = f"expected: {alert.expected:,.0f} {WHAT}\nseen:     {alert.seen:,.0f}" + (
            " at the last check that found any" if recovered else ""
        )
    elif alert.kind == KIND_STALE_INCOMING:
        what = WHAT_STALE
        numbers = f"expected: 0 {WHAT_STALE}\nseen:     {alert.seen:,.0f}" + (
            " at the last check that found any" if recovered else ""
        )
    else:
        numbers = f"expected: {alert.expected:,.0f} submissions\nseen:     {alert.seen:,.0f}"
    state = f"recovered at {alert.ended_at:%Y-%m-%d %H:%M} UTC" if recovered else "ongoing"
    base = getattr(settings, "public_base_url", "").rstrip("/")
    return (
        f"{alert.title}\n\n"
        f"what:  {what}\nwhere: {alert.subject}\nsince: {alert.started_at:%Y-%m-%d %H:%M} UTC\n"
        f"state: {state}\n{numbers}\n\n{alert.details}\n\n"
        f"Health page: {base}/health\nAlert id: {alert.id}\n"
    )


def notify(engine: Engine, settings, recipients: Iterable[str]) -> tuple[int, int]:
    """Send every owed mail (open, then recovery) once; returns (sent, failed).

    With no recipients nothing is owed: the flags are set without sending.
    """
    recipients = [r for r in recipients if r]
    sent = failed = 0
    with Session(engine, expire_on_commit=False) as session:
        owed = session.scalars(
            select(Alert)
            .where(or_(~Alert.notified_open, Alert.ended_at.is_not(None) & ~Alert.notified_closed))
            .order_by(Alert.started_at, Alert.id)
        )
        for alert in owed:
            for recovered in (False, True):
                flag = "notified_closed" if recovered else "notified_open"
                if getattr(alert, flag) or (recovered and alert.ended_at is None):
                    continue
                if recovered and not alert.notified_open:
                    break  # the opening mail failed; keep the order open -> recovered
                ok = True
                for recipient in recipients:
                    try:
                        send_mail(
                            settings,
                            recipient,
                            _subject_line(alert, recovered),
                            _body(alert, recovered, settings),
                        )
                        sent += 1
                    except PipelineError as exc:
                        ok = False
                        failed += 1
                        log.warning(
                            "alert %s: mail to %s failed, will retry: %s", alert.id, recipient, exc
                        )
                if not ok:
                    break
                setattr(alert, flag, True)
                session.commit()
    return sent, failed


def evaluate(
    engine: Engine,
    now: dt.datetime,
    settings,
    recipients: Iterable[str],
    cfg: DetectorSettings = DEFAULT_SETTINGS,
    settle_hours: int = 0,
) -> Evaluation:
    """Detect incidents on the complete hours before `now`, store them, send owed mail.

    The hour `now` falls in is still filling up, so only earlier hours are judged;
    `settle_hours` leaves out that many more hours for stats that arrive late. The work
    queue's dead letters are judged as they are at `now` (skipped when the queue of
    `settings` cannot be read).
    """
    end = hour_of(_naive(now)) - settle_hours * HOUR
    evaluate_from = end - LOOKBACK
    history_start = evaluate_from - cfg.history_hours * HOUR
    frame = StatsFrame.from_rows(read_counts(engine, history_start), history_start, end)
    incidents = detect_all(frame, cfg, evaluate_from)
    judged = dict.fromkeys(KINDS, end)
    dead = read_dead_letter_count(settings)
    if dead is not None:
        checked = _naive(now).replace(microsecond=0)
        judged[KIND_DEAD_LETTERS] = checked
        found = dead_letter_incident(dead, settings.queue_url, settings.queue_max_attempts, checked)
        if found is not None:
            incidents.append(found)
    stale = read_stale_incoming(settings, now)
    if stale is not None:
        checked = _naive(now).replace(microsecond=0)
        judged[KIND_STALE_INCOMING] = checked
        found = stale_incoming_incident(
            stale, settings.incoming_url, settings.stale_incoming_minutes, checked
        )
        if found is not None:
            incidents.append(found)
    result = record_incidents(engine, incidents, end, judged=judged)
    result.mails_sent, result.mail_failures = notify(engine, settings, recipients)
    log.info(
        "health evaluation at %s: %d incidents, %d opened, %d closed, %d mails sent, %d failed, "
        "%s dead letters, %s unconverted incoming batches",
        end,
        len(incidents),
        len(result.opened),
        len(result.closed),
        result.mails_sent,
        result.mail_failures,
        "unknown" if dead is None else dead,
        "unknown" if stale is None else len(stale),
    )
    return result


def list_alerts(engine: Engine, since: dt.datetime) -> list[Alert]:
    """Alerts still open or ended at/after `since`, newest first."""
    since = _naive(since)
    with Session(engine, expire_on_commit=False) as session:
        query = (
            select(Alert)
            .where(or_(Alert.ended_at.is_(None), Alert.ended_at >= since))
            .order_by(Alert.started_at.desc(), Alert.id.desc())
        )
        return list(session.scalars(query))


def delete_alerts(engine: Engine, start: dt.datetime, end: dt.datetime) -> int:
    """Remove alerts that started in [start, end) (the simulator's --replace)."""
    with engine.begin() as conn:
        return conn.execute(
            delete(Alert).where(Alert.started_at >= _naive(start), Alert.started_at < _naive(end))
        ).rowcount


def _naive(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is not None:
        return moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment
