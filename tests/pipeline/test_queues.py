"""One behaviour suite for every work queue backend: SQLite, SQS (moto's server), Redis,
and the in-process memory queue.

Short leases are 1 s on SQS (it counts visibility in whole seconds) and 0.3 s elsewhere;
waiting for one to run out is done by polling with a generous limit, never by sleeping a
fixed time and hoping.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from pipeline.errors import ConfigError
from pipeline.queues import Message, QueueCensus, open_queue
from tests.support.waiting import wait_for

PATIENCE = 30.0  # seconds to wait for something that must happen


@pytest.fixture(params=["sqlite", "sqs", "redis", "memory"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def lease(backend) -> float:
    return 1.0 if backend == "sqs" else 0.3


@pytest.fixture
def queue_url(backend, request, tmp_path):
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/queue.db"
    if backend == "sqs":
        request.getfixturevalue("moto")
        return f"sqs://work-{uuid.uuid4().hex[:8]}"
    if backend == "memory":
        return f"memory://work-{uuid.uuid4().hex[:8]}"
    return request.getfixturevalue("redis_url")


@pytest.fixture
def make_queue(queue_url, lease):
    opened = []

    def make(max_attempts: int = 3):
        queue = open_queue(queue_url, lease_seconds=lease, max_attempts=max_attempts)
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        queue.close()


@pytest.fixture
def queue(make_queue):
    return make_queue()


def claim_eventually(queue, lease: float):
    """Poll until a message becomes visible (e.g. after a lease ran out)."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        message = queue.claim(lease_seconds=lease, wait_seconds=0.2)
        if message is not None:
            return message
    raise AssertionError("no message became visible")


def wait_past(deadline: float) -> None:
    while time.time() <= deadline + 0.05:
        time.sleep(0.05)


def test_send_claim_ack_delivers_each_message_once(queue):
    for body in ["one", "two", "three"]:
        queue.send(body)
    claimed = [queue.claim(lease_seconds=60) for _ in range(3)]
    assert sorted(m.body for m in claimed) == ["one", "three", "two"]
    assert len({m.id for m in claimed}) == 3
    assert all(m.attempts == 1 for m in claimed)
    assert queue.claim(lease_seconds=60) is None
    assert all(queue.ack(m) for m in claimed)
    assert queue.depth() == 0
    assert queue.claim() is None


def test_bodies_round_trip_unicode_and_json(queue):
    body = '{"key": "incoming/ü/batch-1.tpr", "n": 3}'
    queue.send(body)
    assert queue.claim(lease_seconds=60).body == body


def test_claim_waits_for_a_message_sent_meanwhile(queue):
    sender = threading.Timer(0.3, queue.send, args=("late",))
    sender.start()
    try:
        message = queue.claim(lease_seconds=60, wait_seconds=PATIENCE)
    finally:
        sender.join()
    assert message is not None and message.body == "late"


def test_claim_on_an_empty_queue_returns_none(queue):
    assert queue.claim(wait_seconds=0.2) is None


def test_unacked_message_comes_back_after_its_lease(queue):
    queue.send("work")
    first = queue.claim(lease_seconds=queue.lease_seconds)
    if time.time() < first.lease_deadline - 0.3:
        assert (
            queue.claim(lease_seconds=queue.lease_seconds) is None
        )  # hidden while the lease holds
    again = claim_eventually(queue, lease=60)
    assert (again.id, again.body, again.attempts) == (first.id, "work", 2)
    assert again.receipt != first.receipt


def test_extend_keeps_the_message_hidden_past_the_first_lease(queue):
    queue.send("slow")
    message = queue.claim(lease_seconds=queue.lease_seconds)
    first_deadline = message.lease_deadline
    assert queue.extend(message, 60)
    wait_past(first_deadline)
    assert queue.claim(wait_seconds=0.2) is None
    assert queue.depth() == 1
    assert queue.ack(message)
    assert queue.depth() == 0


def test_release_makes_the_message_visible_again_at_once(queue):
    queue.send("retry me")
    message = queue.claim(lease_seconds=60)
    assert queue.release(message)
    again = claim_eventually(queue, lease=60)
    assert (again.id, again.attempts) == (message.id, 2)
    assert not queue.ack(message)  # the released receipt is dead
    assert queue.ack(again)


def test_release_with_delay_hides_the_message_until_then(queue):
    queue.send("later")
    message = queue.claim(lease_seconds=60)
    assert queue.release(message, delay_seconds=60)
    assert queue.claim(wait_seconds=0.2) is None
    assert queue.depth() == 1


def test_receipt_of_an_expired_lease_cannot_ack_after_another_claim(queue):
    queue.send("contested")
    stale = queue.claim(lease_seconds=queue.lease_seconds)
    current = claim_eventually(queue, lease=60)
    assert current.id == stale.id
    assert not queue.ack(stale)
    assert not queue.extend(stale, 60)
    assert not queue.release(stale)
    assert queue.claim(wait_seconds=0.2) is None  # still held by the current consumer
    assert queue.ack(current)
    assert queue.depth() == 0


def test_receipt_of_an_expired_lease_cannot_ack_even_unclaimed(queue):
    queue.send("late ack")
    stale = queue.claim(lease_seconds=queue.lease_seconds)
    wait_past(stale.lease_deadline)
    assert not queue.ack(stale)
    again = claim_eventually(queue, lease=60)
    assert again.id == stale.id


def test_message_is_dead_lettered_after_max_attempts(make_queue):
    queue = make_queue(max_attempts=2)
    queue.send("poison")
    for attempt in (1, 2):
        message = claim_eventually(queue, lease=60)
        assert (message.body, message.attempts) == ("poison", attempt)
        assert queue.release(message)
    assert queue.claim(wait_seconds=0.5) is None
    dead = queue.dead_letters()
    assert [m.body for m in dead] == ["poison"]
    assert dead[0].attempts == 2
    assert queue.dead_letters()[0].id == dead[0].id  # inspecting does not consume
    assert queue.depth() == 0
    wait_for(lambda: queue.dead_letter_count() == 1, 10, "one dead letter")  # SQS: settles


def test_crashed_consumers_message_is_dead_lettered_after_max_attempts(make_queue):
    queue = make_queue(max_attempts=1)
    queue.send("crashes the worker")
    queue.send("healthy")
    first = queue.claim(lease_seconds=queue.lease_seconds)
    assert first.body == "crashes the worker"
    wait_past(first.lease_deadline)  # the consumer "died": its lease runs out
    healthy = claim_eventually(queue, lease=60)
    assert healthy.body == "healthy"
    assert queue.ack(healthy)
    assert queue.claim(wait_seconds=0.2) is None
    assert [m.body for m in queue.dead_letters()] == ["crashes the worker"]


def dead_letter(queue, *bodies: str) -> list:
    """Send `bodies` and fail every claim of them until the queue dead-letters them all."""
    for body in bodies:
        queue.send(body)
    while (message := queue.claim(lease_seconds=60, wait_seconds=0.5)) is not None:
        assert queue.release(message)
    dead = queue.dead_letters()
    assert sorted(m.body for m in dead) == sorted(bodies)
    return dead


def test_redrive_puts_a_dead_letter_back_as_a_fresh_message(make_queue):
    queue = make_queue(max_attempts=2)
    body = '{"key": "20240101/outage.batch", "records": 3, "bytes": 100}'
    [dead] = dead_letter(queue, body)
    assert dead.attempts == 2
    assert queue.redrive(dead)
    assert queue.dead_letters() == []
    assert queue.depth() == 1
    again = claim_eventually(queue, lease=60)
    assert (again.body, again.attempts) == (body, 1)  # attempts counted from zero again
    assert queue.ack(again)
    assert queue.depth() == 0
    assert queue.dead_letters() == []
    assert queue.claim(wait_seconds=0.2) is None


def test_redriven_message_gets_max_attempts_claims_again_before_dead_lettering(make_queue):
    queue = make_queue(max_attempts=2)
    [dead] = dead_letter(queue, "still broken")
    assert queue.redrive(dead)
    for attempt in (1, 2):
        message = claim_eventually(queue, lease=60)
        assert (message.body, message.attempts) == ("still broken", attempt)
        assert queue.release(message)
    assert queue.claim(wait_seconds=0.5) is None
    assert [(m.body, m.attempts) for m in queue.dead_letters()] == [("still broken", 2)]


def test_redrive_of_a_message_that_is_not_dead_does_nothing(make_queue):
    queue = make_queue(max_attempts=1)
    [dead] = dead_letter(queue, "once")
    assert queue.redrive(dead)
    assert not queue.redrive(dead)  # already back on the queue
    live = claim_eventually(queue, lease=60)
    assert not queue.redrive(live)  # a claimed message is not a dead letter
    assert queue.ack(live)
    assert queue.depth() == 0 and queue.dead_letters() == []


def test_redrive_all_moves_every_dead_letter_back(make_queue):
    queue = make_queue(max_attempts=1)
    dead_letter(queue, "a", "b", "c")
    assert queue.redrive_all() == 3
    assert queue.dead_letters() == []
    claimed = [claim_eventually(queue, lease=60) for _ in range(3)]
    assert sorted((m.body, m.attempts) for m in claimed) == [("a", 1), ("b", 1), ("c", 1)]
    assert all(queue.ack(m) for m in claimed)
    assert queue.depth() == 0
    assert queue.redrive_all() == 0


def test_depth_counts_waiting_and_in_flight_messages(queue):
    assert queue.depth() == 0
    for i in range(4):
        queue.send(str(i))
    held = queue.claim(lease_seconds=60)
    assert queue.depth() == 4
    queue.ack(held)
    assert queue.depth() == 3


def test_census_tells_waiting_in_flight_and_delayed_messages_apart(queue):
    assert queue.census() == QueueCensus(0, 0, 0, None)
    for body in ("held", "delayed", "waiting"):
        queue.send(body)
    held = queue.claim(lease_seconds=60)
    delayed = queue.claim(lease_seconds=60)
    assert (held.body, delayed.body) == ("held", "delayed")
    before = time.time()
    assert queue.release(delayed, delay_seconds=3600)
    census = queue.census()
    assert (census.waiting, census.in_flight, census.delayed) == (1, 1, 1)
    assert before + 3599.99 <= census.next_due <= time.time() + 3601  # SQS: whole seconds
    assert census.total == queue.depth() == 3


def test_census_counts_a_delay_that_came_due_and_an_expired_lease_as_waiting(queue, lease):
    queue.send("delayed")
    queue.send("held")
    delayed = queue.claim(lease_seconds=60)
    assert queue.release(delayed, delay_seconds=lease)
    held = queue.claim(lease_seconds=lease)
    assert held.body == "held"
    deadline = time.monotonic() + PATIENCE
    while (census := queue.census()).waiting < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert census == QueueCensus(waiting=2)


def test_census_leaves_out_dead_letters(make_queue):
    queue = make_queue(max_attempts=1)
    dead_letter(queue, "poison")
    assert queue.census().total == 0


def test_lease_deadline_says_until_when_the_lease_holds(queue):
    queue.send("timed")
    before = time.time()
    message = queue.claim(lease_seconds=60)
    assert before + 60 <= message.lease_deadline + 0.01 and message.lease_deadline <= (
        time.time() + 60
    )
    before = time.time()
    assert queue.extend(message, 120)
    assert before + 120 <= message.lease_deadline + 0.01 <= time.time() + 120.01


def test_dead_letters_is_empty_for_a_healthy_queue(queue):
    queue.send("fine")
    queue.ack(queue.claim(lease_seconds=60))
    assert queue.dead_letters() == []


def test_message_bodies_list_waiting_delayed_in_flight_and_dead_messages(
    backend, make_queue, lease
):
    """What the reconciler counts as "covered by a message". SQS cannot list messages
    without claiming them, so it says instead how long a message can live."""
    queue = make_queue(max_attempts=1)
    if backend == "sqs":
        queue.send("waiting")
        assert queue.message_bodies() is None
        assert queue.retention_seconds() == 345600  # SQS's default, 4 days
        return
    queue.send("dead")
    dead = queue.claim(lease_seconds=lease)
    wait_past(dead.lease_deadline)
    for body in ("held", "delayed", "acked", "waiting"):
        queue.send(body)
    assert queue.claim(lease_seconds=60).body == "held"  # "dead" is dead-lettered on the way
    delayed = queue.claim(lease_seconds=60)
    assert delayed.body == "delayed"
    queue.release(delayed, delay_seconds=3600)
    acked = queue.claim(lease_seconds=60)
    assert acked.body == "acked" and queue.ack(acked)
    assert queue.dead_letter_count() == 1
    assert sorted(queue.message_bodies()) == ["dead", "delayed", "held", "waiting"]
    assert queue.retention_seconds() is None


# -- bad configuration -------------------------------------------------------------------------


def test_unknown_queue_scheme_names_the_setting():
    with pytest.raises(ConfigError) as caught:
        open_queue("amqp://localhost/work")
    assert caught.value.setting == "TELEMETRY_QUEUE_URL"
    assert "amqp://" in str(caught.value)


def test_sqlite_queue_under_a_regular_file_names_the_setting(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="^TELEMETRY_QUEUE_URL: "):
        open_queue(f"sqlite:///{blocker}/queue.db")


def test_unreachable_redis_names_the_setting():
    from tests.support.servers import free_port

    with pytest.raises(ConfigError, match="^TELEMETRY_QUEUE_URL: cannot reach Redis"):
        open_queue(f"redis://127.0.0.1:{free_port()}/0")


def test_sqs_url_without_a_name_names_the_setting():
    with pytest.raises(ConfigError, match="^TELEMETRY_QUEUE_URL: .*names no queue"):
        open_queue("sqs://")


def test_non_positive_lease_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="TELEMETRY_QUEUE_URL"):
        open_queue(f"sqlite:///{tmp_path}/q.db", lease_seconds=0)


def test_sqs_scans_of_a_dead_letter_queue_end_when_they_come_round(moto, monkeypatch):
    """A scan longer than the look timeout sees its first messages again; it must stop there
    instead of chasing them for ever (redrive of a message that is no longer there)."""
    import pipeline.queues.sqs as sqs_module

    monkeypatch.setattr(sqs_module, "LOOK_SECONDS", 1)
    queue = sqs_module.SQSQueue(
        f"sqs://scan-{uuid.uuid4().hex[:8]}", "scan", max_attempts=1, endpoint_url=moto.endpoint
    )
    for start in range(0, 200, 10):
        queue._client.send_message_batch(
            QueueUrl=queue.dead_url,
            Entries=[{"Id": str(i), "MessageBody": f"b{start + i}"} for i in range(10)],
        )
    receives = 0
    real_call = queue._call

    def counting(action, **kwargs):
        nonlocal receives
        receives += action == "receive_message"
        assert receives < 500, "the scan does not end"
        return real_call(action, **kwargs)

    monkeypatch.setattr(queue, "_call", counting)
    assert queue.redrive(Message("no-such-id", "", "", 1)) is False
    receives = 0
    assert 0 < len(queue.dead_letters()) <= 200  # ends, even if short after coming round
    queue.close()
