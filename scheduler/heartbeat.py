"""The service's heartbeat row: `service_alive` (scheduler.jobs) reads it to tell the dashboard
and `run-now` whether a service will pick up queued runs.

Other processes compare it with their own wall clock, so the beat is the wall instant of the
injected clock's now (`clock.to_wall`): the same for the real clock, real time for a
ScaledClock, the fake time for a FakeClock.
"""

from __future__ import annotations

import os
import socket

from sqlalchemy import delete, update
from sqlalchemy.orm import sessionmaker

from scheduler.clock import Clock, naive_utc
from scheduler.models import SchedulerHeartbeat


class Heartbeat:
    def __init__(self, Session: sessionmaker, clock: Clock) -> None:
        self.Session = Session
        self.clock = clock
        self.id: int | None = None

    def _wall_now(self):
        return naive_utc(self.clock.to_wall(self.clock.now()))

    def beat(self) -> None:
        """Insert this service's row on the first beat, refresh it on the next ones."""
        now = self._wall_now()
        with self.Session() as session:
            if self.id is None:
                row = SchedulerHeartbeat(
                    host=socket.gethostname(), pid=os.getpid(), started_at=now, beat_at=now
                )
                session.add(row)
                session.commit()
                self.id = row.id
            else:
                session.execute(
                    update(SchedulerHeartbeat)
                    .where(SchedulerHeartbeat.id == self.id)
                    .values(beat_at=now)
                )
                session.commit()

    def remove(self) -> None:
        """The service stopped: it no longer counts as alive."""
        if self.id is not None:
            with self.Session() as session:
                session.execute(delete(SchedulerHeartbeat).where(SchedulerHeartbeat.id == self.id))
                session.commit()
            self.id = None
