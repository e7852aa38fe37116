"""The scheduler's job functions read time from the clock they are given, as the service does.

A cancellation dated by the real clock while the service runs on a steered one would put a
run's end before its start in the run list.
"""

from __future__ import annotations

import datetime as dt

from scheduler import cancel_run, create_job, request_run_now
from scheduler.clock import FakeClock
from scheduler.jobs import service_alive
from scheduler.models import SchedulerHeartbeat

JOB = dict(
    name="clocked",
    owner="ana@example.com",
    tarball_key="clocked/abc.tar.gz",
    command="python run.py",
    output_dir="output",
    frequency="daily",
    hour=6,
)
THEN = dt.datetime(2031, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


def test_a_cancellation_is_dated_by_the_given_clock(session):
    run = request_run_now(session, create_job(session, **JOB))
    cancelled = cancel_run(session, run, clock=FakeClock(THEN))
    assert cancelled.finished_at == THEN.replace(tzinfo=None)


def test_liveness_is_judged_by_the_given_clock(session):
    session.add(SchedulerHeartbeat(host="h", pid=1, beat_at=THEN.replace(tzinfo=None)))
    session.commit()
    assert service_alive(
        session, within_seconds=15, clock=FakeClock(THEN + dt.timedelta(seconds=5))
    )
    assert not service_alive(
        session, within_seconds=15, clock=FakeClock(THEN + dt.timedelta(seconds=30))
    )
