"""The heartbeat reads the service's injected clock, like every other time read."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from scheduler.clock import FakeClock
from scheduler.models import SchedulerHeartbeat
from scheduler.service import SchedulerService
from tests.support.scheduler import T0, RecordingRunner


def beats(Session) -> list[tuple[dt.datetime, dt.datetime]]:
    with Session() as session:
        return list(
            session.execute(select(SchedulerHeartbeat.started_at, SchedulerHeartbeat.beat_at))
        )


def test_heartbeat_follows_the_injected_clock_and_goes_with_the_service(
    settings,
    config,
    Session,
):
    clock = FakeClock(T0)
    service = SchedulerService(settings, config, clock=clock, runners={"local": RecordingRunner()})
    service.dispatch()
    assert beats(Session) == [(T0, T0)]
    clock.advance(seconds=5)
    service.dispatch()
    assert beats(Session) == [(T0, T0 + dt.timedelta(seconds=5))]
    service.stop()
    assert beats(Session) == []
