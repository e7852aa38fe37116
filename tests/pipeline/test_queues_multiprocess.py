"""Queue crash semantics with real processes: SQLite (shared file), Redis (real server) and
SQS (moto's server). The memory queue lives in one process; its threads are tested in
test_queue_memory.py.

Worker processes are started with the "spawn" method, so each opens its own connections as a
separate service process would.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import uuid

import pytest

from pipeline.queues import open_queue
from tests.support.queue_workers import claim_and_hang, consume
from tests.support.waiting import wait_for

PATIENCE = 60.0
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(params=["sqlite", "redis", "sqs"])
def queue_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/queue.db"
    if request.param == "sqs":
        request.getfixturevalue("moto")  # its endpoint is in the environment children inherit
        return f"sqs://work-{uuid.uuid4().hex[:8]}"
    return request.getfixturevalue("redis_url")


def test_concurrent_consumers_never_share_a_message_and_process_each_once(queue_url, tmp_path):
    queue = open_queue(queue_url, lease_seconds=60, max_attempts=3)
    bodies = [f"batch-{i:03d}" for i in range(80)]
    for body in bodies:
        queue.send(body)
    holding = tmp_path / "holding"
    holding.mkdir()
    results = [tmp_path / f"worker-{n}.txt" for n in range(3)]
    workers = [
        SPAWN.Process(target=consume, args=(queue_url, str(holding), str(path))) for path in results
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(PATIENCE)
        assert worker.exitcode == 0
    lines = [line for path in results if path.exists() for line in path.read_text().splitlines()]
    assert not [line for line in lines if line.startswith("OVERLAP")]
    processed = sorted(line.split()[0] for line in lines)
    assert processed == bodies  # every message exactly once
    assert all(line.endswith(" 1") for line in lines)  # and every ack held
    assert sum(1 for path in results if path.exists() and path.read_text()) > 1
    assert queue.depth() == 0
    assert queue.dead_letters() == []


def test_message_of_a_consumer_killed_mid_lease_comes_back(queue_url, tmp_path):
    queue = open_queue(queue_url, lease_seconds=60, max_attempts=5)
    queue.send("survives a crash")
    report = tmp_path / "claimed.txt"
    victim = SPAWN.Process(target=claim_and_hang, args=(queue_url, str(report)))
    victim.start()
    try:
        wait_for(report.exists, PATIENCE, "the consumer to claim")
        claimed_id, body, deadline = _parse_report(report.read_text())
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(PATIENCE)
        assert victim.exitcode == -signal.SIGKILL
        if time.time() < deadline - 0.5:
            assert queue.claim() is None  # still leased to the dead consumer
        again = None
        wait_until = time.monotonic() + PATIENCE
        while again is None and time.monotonic() < wait_until:
            again = queue.claim(lease_seconds=60, wait_seconds=0.5)
        assert again is not None, "the dead consumer's message never came back"
        assert (again.id, again.body, again.attempts) == (claimed_id, body, 2)
        assert queue.ack(again)
        assert queue.depth() == 0
    finally:
        if victim.is_alive():
            os.kill(victim.pid, signal.SIGKILL)
            victim.join(10)


def _parse_report(text: str) -> tuple[str, str, float]:
    msg_id, rest = text.split(" ", 1)
    body, deadline = rest.rsplit(" ", 1)
    return msg_id, body, float(deadline)
