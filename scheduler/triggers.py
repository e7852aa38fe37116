"""When a job fires: APScheduler 3 triggers computed from the job's fields, all in UTC.

daily    -> every day at `hour`:00
weekly   -> on `day_of_week` (0 = Monday) at `hour`:00
monthly  -> on `day_of_month` at `hour`:00; for 29-31 the firing moves to the month's last
            day when the month is shorter (Feb 28/29, Apr 30, ...), never skipping a month.

The clamp is an OrTrigger of "day N" and "last day of the months shorter than N"; in a month
that has day N the second part never fires earlier, so each month fires exactly once.
Pure functions: no database, no clock beyond the arguments.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import NamedTuple, Protocol

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from scheduler.clock import UTC, Clock, as_utc

CRON_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Months whose shortest length is below N, for N = 29, 30, 31.
_SHORT_MONTHS = {29: "2", 30: "2", 31: "2,4,6,9,11"}


class Schedule(Protocol):
    """The job fields a schedule depends on (a Job row or any object with them)."""

    frequency: str
    day_of_week: int | None
    day_of_month: int | None
    hour: int
    end_date: dt.datetime | None


class ScheduleKey(NamedTuple):
    """A distinct schedule: jobs with equal keys fire at the same instants, so the service keeps
    one alarm per key (end dates are applied per job). `day` is the weekday (0 = Monday) of a
    weekly schedule, the day of the month of a monthly one, None for daily."""

    frequency: str
    day: int | None
    hour: int

    @property
    def alarm_id(self) -> str:
        """The APScheduler job id of this schedule's alarm."""
        return f"fire:{self.frequency}:{self.day}:{self.hour}"


def schedule_key(job: Schedule) -> ScheduleKey:
    """Jobs with equal keys fire at the same instants (end dates are applied per job)."""
    if job.frequency == "weekly":
        return ScheduleKey("weekly", job.day_of_week, job.hour)
    if job.frequency == "monthly":
        return ScheduleKey("monthly", job.day_of_month, job.hour)
    return ScheduleKey("daily", None, job.hour)


def trigger_for_key(key: ScheduleKey) -> BaseTrigger:
    """The APScheduler trigger for a `schedule_key`."""
    frequency, day, hour = ScheduleKey(*key)
    if frequency == "daily":
        return CronTrigger(hour=hour, minute=0, second=0, timezone=UTC)
    if frequency == "weekly":
        return CronTrigger(day_of_week=CRON_DAYS[day], hour=hour, minute=0, second=0, timezone=UTC)
    if frequency == "monthly":
        if day <= 28:
            return CronTrigger(day=day, hour=hour, minute=0, second=0, timezone=UTC)
        return OrTrigger(
            [
                CronTrigger(day=day, hour=hour, minute=0, second=0, timezone=UTC),
                CronTrigger(
                    month=_SHORT_MONTHS[day],
                    day="last",
                    hour=hour,
                    minute=0,
                    second=0,
                    timezone=UTC,
                ),
            ]
        )
    raise ValueError(f"unknown frequency {frequency!r}")


def trigger_for(job: Schedule) -> BaseTrigger:
    return trigger_for_key(schedule_key(job))


def _next_from_trigger(trigger: BaseTrigger, after: dt.datetime) -> dt.datetime | None:
    # APScheduler returns the first firing >= now; we want strictly after `after`.
    return trigger.get_next_fire_time(None, after + dt.timedelta(microseconds=1))


def next_run_time(
    job: Schedule, after: dt.datetime | None = None, *, clock: Clock | None = None
) -> dt.datetime | None:
    """The first firing strictly after `after` (default: the clock's now), aware UTC; None past
    the end date."""
    after = as_utc(after) if after is not None else (clock or Clock()).now()
    fire = _next_from_trigger(trigger_for(job), after)
    if fire is None or (job.end_date is not None and fire > as_utc(job.end_date)):
        return None
    return fire


def firings_between(job: Schedule, start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
    """Every firing t with start < t <= end (respecting the end date), in order."""
    trigger = trigger_for(job)
    end = as_utc(end)
    if job.end_date is not None:
        end = min(end, as_utc(job.end_date))
    current = as_utc(start)
    while True:
        fire = _next_from_trigger(trigger, current)
        if fire is None or fire > end:
            return
        yield fire
        current = fire


_LOOKBACK = {
    "daily": dt.timedelta(days=2),
    "weekly": dt.timedelta(days=8),
    "monthly": dt.timedelta(days=32),
}


def latest_firing(job_or_key: Schedule | ScheduleKey, at: dt.datetime) -> dt.datetime | None:
    """The last firing at or before `at` (ignoring end dates): what an alarm that just went off was for."""
    key = ScheduleKey(*job_or_key) if isinstance(job_or_key, tuple) else schedule_key(job_or_key)
    trigger = trigger_for_key(key)
    at = as_utc(at)
    current = at - _LOOKBACK[key.frequency]
    latest = None
    while True:
        fire = _next_from_trigger(trigger, current)
        if fire is None or fire > at:
            return latest
        latest = fire
        current = fire


def _round_to_second(instant: dt.datetime) -> dt.datetime:
    return (instant + dt.timedelta(microseconds=500_000)).replace(microsecond=0)


class ClockTrigger(BaseTrigger):
    """Wraps a trigger computed in simulated time so APScheduler can wait for it in wall time."""

    def __init__(self, inner: BaseTrigger, clock: Clock) -> None:
        self.inner = inner
        self.clock = clock

    def get_next_fire_time(self, previous_fire_time, now):
        if previous_fire_time is not None:
            # Round-tripping through float seconds can land a hair before the previous firing;
            # the inner triggers fire on whole seconds, so round, or APScheduler would see the
            # same firing again and again.
            previous = _round_to_second(self.clock.from_wall(previous_fire_time))
            fire = _next_from_trigger(self.inner, previous)
        else:
            fire = self.inner.get_next_fire_time(None, self.clock.from_wall(now))
        if fire is None:
            return None
        wall = self.clock.to_wall(fire)
        if previous_fire_time is not None and wall <= previous_fire_time:
            wall = previous_fire_time + dt.timedelta(microseconds=1)
        return wall

    def __str__(self) -> str:
        return f"clock[{self.inner}]"
