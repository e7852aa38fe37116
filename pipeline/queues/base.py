"""The work queue contract: at-least-once delivery with leases and a dead-letter queue.

A consumer `claim`s a message, which hides it from other consumers for the lease. It either
`ack`s it (gone for good), `release`s it (visible again at once, e.g. to park and retry), or
dies, in which case the message reappears when the lease runs out. A message that has been
claimed `max_attempts` times without an ack moves to the dead-letter queue on its next
claim instead of being handed out again, so one poison batch cannot stall the workers.
Once the cause is fixed (say, a store outage that outlasted the retries), `redrive` puts a
dead letter back on the queue as a fresh message, its attempts counted from zero again.

A lease that has run out is lost for good: `ack`, `extend` and `release` with its receipt do
nothing and return False, on every backend, whether or not another consumer has claimed the
message since. A consumer that works longer than its lease must `extend` it in time: a claimed
message's `lease_deadline` says until when the lease holds, as the backend guarantees it.

A message the queue holds but cannot hand out is either in flight (leased to a consumer, back
when the lease runs out) or delayed (released with a delay, back when it comes due). `census`
tells them apart, so a consumer knows whether waiting can help without knowing the backend.

Every backend is safe to share between threads; all but `memory://` also between processes.
"""

from __future__ import annotations

import abc
import dataclasses


@dataclasses.dataclass
class Message:
    id: str
    body: str
    receipt: str
    attempts: int
    lease_deadline: float = 0.0
    """Wall-clock time (time.time()) until which the lease is guaranteed to hold, kept up to
    date by `extend`; never later than the backend's own deadline (each backend rounds as its
    server does). 0 for dead letters."""


@dataclasses.dataclass(frozen=True)
class QueueCensus:
    """What a queue holds besides dead letters, by what a claim would do with it now."""

    waiting: int = 0
    """Visible: a claim would get one (approximate where `depth` is)."""
    in_flight: int = 0
    """Leased to a consumer: back when it acks, releases, or its lease runs out."""
    delayed: int = 0
    """Released with a delay that has not passed: back at `next_due` at the soonest."""
    next_due: float | None = None
    """When the soonest delayed message becomes visible (time.time()); None if none is."""

    @property
    def total(self) -> int:
        """Every message the queue holds but its dead letters: what `depth` counts."""
        return self.waiting + self.in_flight + self.delayed


class WorkQueue(abc.ABC):
    url: str
    lease_seconds: float
    max_attempts: int

    @abc.abstractmethod
    def send(self, body: str) -> None: ...

    @abc.abstractmethod
    def claim(
        self, lease_seconds: float | None = None, wait_seconds: float = 0.0
    ) -> Message | None:
        """Return the next visible message, leased to the caller, or None after waiting.

        With `wait_seconds=0` a backend may answer None although a message is visible (an SQS
        short poll asks only some of its servers); any wait above 0 sees every visible one.
        """

    @abc.abstractmethod
    def ack(self, message: Message) -> bool:
        """Delete a claimed message; False (and nothing done) when the lease was lost."""

    @abc.abstractmethod
    def extend(self, message: Message, lease_seconds: float) -> bool:
        """Push the lease `lease_seconds` into the future from now; False when it was lost."""

    @abc.abstractmethod
    def release(self, message: Message, delay_seconds: float = 0.0) -> bool:
        """Give a claimed message back, visible again after `delay_seconds`.

        The claim still counts as an attempt. False when the lease was already lost.
        """

    @abc.abstractmethod
    def depth(self) -> int:
        """Messages waiting, delayed or in flight, not counting dead letters.

        Approximate on SQS, where it may lag a send or an ack by a moment.
        """

    @abc.abstractmethod
    def census(self) -> QueueCensus:
        """The messages `depth` counts, told apart: waiting, in flight, delayed.

        Exact where the server knows which is which (SQLite, Redis, memory). SQS knows only
        "not visible", so it counts as delayed the delays released through it in this process
        and the processes it forked (see pipeline.queues.delay_ledger), the rest in flight.
        """

    @abc.abstractmethod
    def dead_letters(self) -> list[Message]:
        """The messages that exceeded `max_attempts`, for a person to inspect."""

    def dead_letter_count(self) -> int:
        """How many dead letters there are, without touching them (for monitoring)."""
        return len(self.dead_letters())

    @abc.abstractmethod
    def redrive(self, message: Message) -> bool:
        """Move one dead letter (from `dead_letters`) back to the queue as a fresh message.

        It can be claimed at once and its attempts start again from zero. False (and nothing
        done) when it is no longer a dead letter, e.g. another operator redrove it already.
        On SQS the message gets a new id; elsewhere it keeps its id.
        """

    def redrive_all(self) -> int:
        """Redrive every current dead letter; return how many went back to the queue.

        Messages dead-lettered while this runs may stay behind; run it again for those.
        """
        return sum(self.redrive(message) for message in self.dead_letters())

    def message_bodies(self) -> list[str] | None:
        """The body of every message the queue holds: waiting (delayed ones too), in flight or
        dead-lettered. None when the backend cannot list them without disturbing them (on SQS
        a receive counts as a claim and hides the message); such a backend says instead, with
        `retention_seconds`, how long a message can live at most.

        The reconciler (`pipeline.reconcile`) uses this to find batches in the incoming store
        that no message names any more (a queue that lost its data).
        """
        return None

    def retention_seconds(self) -> float | None:
        """The longest a message can stay in the queue before the backend drops it unread
        (SQS's MessageRetentionPeriod); None when messages stay until acknowledged."""
        return None

    def check(self) -> None:
        """Raise ConfigError/QueueError when the queue is unusable (for health checks)."""
        self.depth()

    def close(self) -> None:
        """Release connections; the queue object must not be used afterwards."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
