"""Jinja filters: every time the dashboard shows is naive UTC and labelled as such."""

from __future__ import annotations

import datetime as dt

from flask import Flask

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def utc(moment: dt.datetime | None) -> str:
    if moment is None:
        return "—"
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_utc(moment: dt.datetime | None) -> str | None:
    """ISO 8601 with the UTC offset, for JSON (the app stores naive UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat()


def duration(start: dt.datetime | None, end: dt.datetime | None) -> str:
    if start is None or end is None:
        return "—"
    seconds = int((end - start).total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def schedule(job) -> str:
    """A human description of a job's schedule, e.g. 'weekly on Monday at 12:00 UTC'."""
    at = f"at {job.hour:02d}:00 UTC"
    if job.frequency == "weekly" and job.day_of_week is not None:
        return f"weekly on {WEEKDAYS[job.day_of_week]} {at}"
    if job.frequency == "monthly" and job.day_of_month is not None:
        return f"monthly on day {job.day_of_month} {at}"
    return f"daily {at}"


def init_app(app: Flask) -> None:
    app.add_template_filter(utc, "utc")
    app.add_template_filter(schedule, "schedule")
    app.add_template_global(duration, "duration")
