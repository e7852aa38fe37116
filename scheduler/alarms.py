"""APScheduler's alarms: one job per distinct schedule (scheduler.triggers.ScheduleKey), kept
in step with the jobs table by `sync`; when one goes off, the service fires that schedule."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from scheduler import policy
from scheduler.clock import Clock, naive_utc
from scheduler.models import Job
from scheduler.triggers import ClockTrigger, ScheduleKey, latest_firing, trigger_for_key

log = logging.getLogger(__name__)


def wanted_schedules(Session: sessionmaker, now: dt.datetime) -> set[ScheduleKey]:
    """The schedules of the enabled jobs that have not ended."""
    with Session() as session:
        jobs = session.scalars(select(Job).where(Job.enabled.is_(True))).all()
        return policy.wanted_schedules(jobs, now)


class Alarms:
    """The alarms set in one APScheduler; `fire(key, scheduled_for)` runs when one goes off."""

    def __init__(self, clock: Clock, fire: Callable[[ScheduleKey, dt.datetime], object]) -> None:
        self.clock = clock
        self.fire = fire
        self.keys: set[ScheduleKey] = set()

    def sync(self, scheduler: BaseScheduler | None, wanted: set[ScheduleKey]) -> None:
        """Add the alarms of new schedules and remove those of schedules no job has any more."""
        if scheduler is not None:
            for key in wanted - self.keys:
                trigger = trigger_for_key(key)
                if not self.clock.is_wall:
                    trigger = ClockTrigger(trigger, self.clock)
                scheduler.add_job(
                    self.on_alarm, trigger, args=[key], id=key.alarm_id, replace_existing=True
                )
            for key in self.keys - wanted:
                try:
                    scheduler.remove_job(key.alarm_id)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        self.keys = wanted

    def on_alarm(self, key: ScheduleKey) -> None:
        """An alarm went off: fire its schedule for the instant it was set for."""
        scheduled_for = latest_firing(key, self.clock.now())
        if scheduled_for is None:
            return
        try:
            self.fire(key, naive_utc(scheduled_for))
        except Exception:
            log.exception("firing %s at %s failed", key, scheduled_for)
