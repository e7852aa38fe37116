"""A work queue in this process's memory, `memory://name`: for tests and single-process use.

It keeps the whole contract (leases, delays, dead letters, redrive) with none of the I/O, in
the spirit of dramatiq's StubBroker, so a unit test of a consumer needs no server, file or
sleep: pass a `clock` and move it forward to run a lease out or bring a delay due, and `join`
to wait for consumer threads to finish everything (failing at once on a dead letter).

Every `memory://` URL with the same name opened in one process is the same queue, shared by
its threads (one lock guards it). No other process shares it (a fork gets a copy that goes its
own way), and it is gone when the process ends: no choice for services that run as several
processes (ingest and convert, `convert --workers N`).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
import uuid
from collections.abc import Callable

from pipeline.errors import ConfigError, QueueError
from pipeline.queues.base import Message, QueueCensus, WorkQueue

#: The longest a waiting `claim` sleeps between looks, since a clock moving on (a lease
#: running out, a delay coming due) wakes no one.
POLL_SECONDS = 0.02


@dataclasses.dataclass
class _Entry:
    id: str
    body: str
    visible_at: float
    attempts: int = 0
    receipt: str | None = None  # set while leased
    dead: bool = False


class _QueueState:
    """One named queue: its messages in send order and the condition that guards them."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.entries: dict[str, _Entry] = {}
        self.ids = itertools.count(1)


_queues: dict[str, _QueueState] = {}
_queues_lock = threading.Lock()


def _state(name: str) -> _QueueState:
    with _queues_lock:
        return _queues.setdefault(name, _QueueState())


class MemoryQueue(WorkQueue):
    def __init__(
        self,
        url: str,
        name: str,
        *,
        lease_seconds: float = 300.0,
        max_attempts: int = 5,
        setting: str = "TELEMETRY_QUEUE_URL",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lease_seconds <= 0 or max_attempts < 1:
            raise ConfigError(setting, "lease must be positive and max_attempts at least 1")
        self.url = url
        self.name = name
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.clock = clock
        self._state = _state(name)

    def send(self, body: str) -> None:
        state = self._state
        with state.changed:
            msg_id = f"{next(state.ids):012d}"
            state.entries[msg_id] = _Entry(msg_id, body, self.clock())
            state.changed.notify_all()

    def _claim_once(self, lease: float) -> Message | None:
        now = self.clock()
        visible = [e for e in self._state.entries.values() if not e.dead and e.visible_at <= now]
        for entry in sorted(visible, key=lambda e: e.visible_at):  # stable: send order on ties
            if entry.attempts >= self.max_attempts:
                entry.dead, entry.receipt = True, None
                self._state.changed.notify_all()  # wakes `join`
                continue
            entry.attempts += 1
            entry.receipt = uuid.uuid4().hex
            entry.visible_at = now + lease
            return Message(entry.id, entry.body, entry.receipt, entry.attempts, entry.visible_at)
        return None

    def claim(
        self, lease_seconds: float | None = None, wait_seconds: float = 0.0
    ) -> Message | None:
        lease = self.lease_seconds if lease_seconds is None else lease_seconds
        deadline = time.monotonic() + wait_seconds
        with self._state.changed:
            while True:
                message = self._claim_once(lease)
                remaining = deadline - time.monotonic()
                if message is not None or remaining <= 0:
                    return message
                self._state.changed.wait(min(POLL_SECONDS, remaining))

    def _held(self, message: Message) -> _Entry | None:
        """The entry while `message`'s lease holds (call with the lock held)."""
        entry = self._state.entries.get(message.id)
        if (
            entry is None
            or entry.dead
            or not message.receipt
            or entry.receipt != message.receipt
            or entry.visible_at <= self.clock()
        ):
            return None
        return entry

    def ack(self, message: Message) -> bool:
        with self._state.changed:
            if self._held(message) is None:
                return False
            del self._state.entries[message.id]
            self._state.changed.notify_all()  # wakes `join`
            return True

    def extend(self, message: Message, lease_seconds: float) -> bool:
        with self._state.changed:
            entry = self._held(message)
            if entry is None:
                return False
            entry.visible_at = message.lease_deadline = self.clock() + lease_seconds
            return True

    def release(self, message: Message, delay_seconds: float = 0.0) -> bool:
        with self._state.changed:
            entry = self._held(message)
            if entry is None:
                return False
            entry.receipt = None
            entry.visible_at = self.clock() + delay_seconds
            self._state.changed.notify_all()
            return True

    def depth(self) -> int:
        return self.census().total

    def census(self) -> QueueCensus:
        with self._state.changed:
            now = self.clock()
            live = [(e.visible_at, e.receipt) for e in self._state.entries.values() if not e.dead]
        hidden = [(at, receipt) for at, receipt in live if at > now]
        delays = [at for at, receipt in hidden if receipt is None]
        return QueueCensus(
            waiting=len(live) - len(hidden),
            in_flight=len(hidden) - len(delays),
            delayed=len(delays),
            next_due=min(delays, default=None),
        )

    def join(self, timeout: float = 30.0) -> None:
        """Wait until every message has been acknowledged (for tests with consumer threads).

        Raises QueueError at once when a message is dead-lettered, and after `timeout`
        seconds when messages are left.
        """
        deadline = time.monotonic() + timeout
        with self._state.changed:
            while True:
                entries = self._state.entries.values()
                dead = [e.id for e in entries if e.dead]
                if dead:
                    raise QueueError(f"{self.url}: dead-lettered: {', '.join(dead)}")
                if not entries:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise QueueError(f"{self.url}: {len(entries)} message(s) left after {timeout}s")
                self._state.changed.wait(min(POLL_SECONDS, remaining))

    def message_bodies(self) -> list[str]:
        with self._state.changed:
            return [entry.body for entry in self._state.entries.values()]

    def dead_letters(self) -> list[Message]:
        with self._state.changed:
            dead = [e for e in self._state.entries.values() if e.dead]
            return [Message(e.id, e.body, "", e.attempts) for e in dead]

    def redrive(self, message: Message) -> bool:
        """Back to the queue, visible now, attempts from zero; id and body kept."""
        with self._state.changed:
            entry = self._state.entries.get(message.id)
            if entry is None or not entry.dead:
                return False
            entry.dead, entry.attempts, entry.visible_at = False, 0, self.clock()
            self._state.changed.notify_all()
            return True
