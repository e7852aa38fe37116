"""What only the memory queue has: a clock a test moves, and one queue per name and process.

The contract itself is tested with every backend in test_queues.py.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from pipeline.errors import ConfigError, QueueError
from pipeline.queues import QueueCensus, open_queue
from pipeline.queues.memory import MemoryQueue


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(clock) -> MemoryQueue:
    name = f"clocked-{uuid.uuid4().hex[:8]}"
    return MemoryQueue(f"memory://{name}", name, lease_seconds=30, max_attempts=2, clock=clock)


def test_a_lease_runs_out_when_the_clock_passes_its_deadline(queue, clock):
    queue.send("work")
    first = queue.claim()
    assert first.lease_deadline == clock.now + 30
    clock.now += 29.9
    assert queue.claim() is None
    assert queue.census() == QueueCensus(in_flight=1)
    clock.now += 0.1
    again = queue.claim()
    assert (again.id, again.attempts) == (first.id, 2)
    assert not queue.ack(first)
    assert queue.ack(again)


def test_a_delay_comes_due_when_the_clock_reaches_it(queue, clock):
    queue.send("later")
    message = queue.claim()
    assert queue.release(message, delay_seconds=3600)
    due = clock.now + 3600
    assert queue.census() == QueueCensus(delayed=1, next_due=due)
    clock.now = due - 1
    assert queue.claim() is None
    clock.now = due
    assert queue.census() == QueueCensus(waiting=1)
    assert queue.claim().body == "later"


def test_a_message_is_dead_lettered_on_the_claim_after_max_attempts(queue, clock):
    queue.send("poison")
    for _ in range(2):
        queue.claim()
        clock.now += 30  # the consumer died each time
    assert queue.claim() is None
    assert [(m.body, m.attempts) for m in queue.dead_letters()] == [("poison", 2)]
    assert queue.census().total == 0


def test_every_url_with_one_name_is_one_queue_and_other_names_are_others():
    name = f"shared-{uuid.uuid4().hex[:8]}"
    open_queue(f"memory://{name}").send("one")
    assert open_queue(f"memory://{name}").claim().body == "one"
    assert open_queue(f"memory://{name}-other").claim() is None


def test_threads_never_share_a_message():
    name = f"threads-{uuid.uuid4().hex[:8]}"
    url = f"memory://{name}"
    bodies = [f"batch-{i:03d}" for i in range(200)]
    for body in bodies:
        open_queue(url).send(body)
    taken: list[list[str]] = [[] for _ in range(4)]

    def consume(mine: list[str]) -> None:
        queue = open_queue(url, lease_seconds=60)
        while (message := queue.claim()) is not None:
            mine.append(message.body)
            assert queue.ack(message)

    threads = [threading.Thread(target=consume, args=(mine,)) for mine in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(body for mine in taken for body in mine) == bodies


def test_join_returns_once_consumer_threads_acked_everything(queue):
    for i in range(20):
        queue.send(str(i))

    def consume() -> None:
        while (message := queue.claim(wait_seconds=0.1)) is not None:
            assert queue.ack(message)

    threads = [threading.Thread(target=consume) for _ in range(3)]
    for thread in threads:
        thread.start()
    queue.join()
    for thread in threads:
        thread.join(30)
    assert queue.census().total == 0


def test_join_fails_at_once_on_a_dead_letter(queue, clock):
    queue.send("poison")
    for _ in range(2):
        queue.release(queue.claim())
    assert queue.claim() is None  # dead-lettered now
    with pytest.raises(QueueError, match="dead-lettered"):
        queue.join(timeout=60)


def test_join_gives_up_after_its_timeout_with_work_left(queue):
    queue.send("never consumed")
    with pytest.raises(QueueError, match="1 message"):
        queue.join(timeout=0)


def test_a_memory_url_without_a_name_names_the_setting():
    with pytest.raises(ConfigError, match="^TELEMETRY_QUEUE_URL: .*names no queue"):
        open_queue("memory://")
