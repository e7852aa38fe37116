"""Injectable clocks: the service asks a clock for "now" so tests and the benchmark can steer time.

`SystemClock` is real UTC time. `FakeClock` only moves when a test advances it.
`ScaledClock` runs simulated time faster than the wall clock (a simulated day in a minute)
and converts between the two, so APScheduler can still sleep in real seconds while the
triggers compute simulated firing times.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

UTC = dt.UTC


class Clock:
    """Aware-UTC time source; `to_wall`/`from_wall` map simulated instants to real ones."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)

    def to_wall(self, instant: dt.datetime) -> dt.datetime:
        return instant

    def from_wall(self, instant: dt.datetime) -> dt.datetime:
        return instant

    @property
    def is_wall(self) -> bool:
        return True


SystemClock = Clock


class FakeClock(Clock):
    """Time stands still until `advance`/`set` move it (unit tests that call the service's
    methods directly; APScheduler sleeps in wall time, so use ScaledClock with `start()`)."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = as_utc(start)
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def set(self, instant: dt.datetime) -> None:
        with self._lock:
            self._now = as_utc(instant)

    def advance(self, **delta: float) -> dt.datetime:
        with self._lock:
            self._now += dt.timedelta(**delta)
            return self._now

    @property
    def is_wall(self) -> bool:
        return False


class ScaledClock(Clock):
    """Simulated time = `start` + (wall seconds since creation) * `speed`."""

    def __init__(self, start: dt.datetime, speed: float) -> None:
        self.start = as_utc(start)
        self.speed = float(speed)
        self._wall0 = time.time()

    def now(self) -> dt.datetime:
        return self.from_wall(dt.datetime.now(UTC))

    def to_wall(self, instant: dt.datetime) -> dt.datetime:
        seconds = (as_utc(instant) - self.start).total_seconds() / self.speed
        return dt.datetime.fromtimestamp(self._wall0 + seconds, UTC)

    def from_wall(self, instant: dt.datetime) -> dt.datetime:
        seconds = (instant.timestamp() - self._wall0) * self.speed
        return self.start + dt.timedelta(seconds=seconds)

    @property
    def is_wall(self) -> bool:
        return False


def as_utc(instant: dt.datetime) -> dt.datetime:
    """Aware UTC; naive values (as stored in the database) are taken to be UTC already."""
    if instant.tzinfo is None:
        return instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


def naive_utc(instant: dt.datetime) -> dt.datetime:
    """Naive UTC, the form every DateTime column stores."""
    return as_utc(instant).replace(tzinfo=None)
