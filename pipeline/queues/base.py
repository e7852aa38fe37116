"""The work queue contract: at-least-once delivery with leases and a dead-letter queue.

A consumer `claim`s a message, which hides it from other consumers for the lease. It either
`ack`s it (gone for good), `release`s it (visible again at once, e.g. to park and retry), or
dies, in which case the message reappears when the lease runs out. A message that has been
claimed `max_attempts` times without an ack moves to the dead-letter queue on its next
claim instead of being handed out again, so one poison batch cannot stall the workers.
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


class WorkQueue(abc.ABC):
    url: str
    lease_seconds: float
    max_attempts: int

    @abc.abstractmethod
    def send(self, body: str) -> None: ...

    @abc.abstractmethod
    def claim(self, lease_seconds: float | None = None, wait_seconds: float = 0.0) -> Message | None:
        """Return the next visible message, leased to the caller, or None after waiting."""

    @abc.abstractmethod
    def ack(self, message: Message) -> None:
        """Delete a claimed message; acking after the lease was lost is a no-op."""

    @abc.abstractmethod
    def extend(self, message: Message, lease_seconds: float) -> None:
        """Push the lease of a claimed message `lease_seconds` into the future from now."""

    @abc.abstractmethod
    def release(self, message: Message, delay_seconds: float = 0.0) -> None:
        """Give a claimed message back, visible again after `delay_seconds`."""

    @abc.abstractmethod
    def depth(self) -> int:
        """Messages waiting or in flight, not counting dead letters (approximate on SQS)."""

    @abc.abstractmethod
    def dead_letters(self) -> list[Message]:
        """The messages that exceeded `max_attempts`, for a person to inspect."""

    def close(self) -> None:
        """Release connections; the queue object must not be used afterwards."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
