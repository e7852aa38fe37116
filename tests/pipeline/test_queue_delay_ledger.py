"""The SQS backend's note of the delays it set: what its `census` counts as delayed.

SQS cannot tell a delayed message from a leased one, so the ledger is how a worker of
`python -m convert --workers N` knows what its siblings delayed: it must cross a fork.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid

from pipeline.queues import open_queue
from pipeline.queues.delay_ledger import DelayLedger, ledger_for


def test_the_ledger_counts_only_delays_not_due_yet():
    ledger = DelayLedger()
    now = time.time()
    ledger.add(now + 3600)
    ledger.add(now + 60)
    ledger.add(now - 1)  # already due: claimable again, nothing to count
    assert ledger.pending() == [now + 60, now + 3600]


def _delay_in_child(queue_url: str, due: float) -> None:
    ledger_for(queue_url).add(due)


def test_a_forked_process_notes_its_delays_in_its_parents_ledger():
    queue_url = f"http://sqs.example/{uuid.uuid4().hex}"
    ledger = ledger_for(queue_url)  # the parent opens the queue before it forks
    due = time.time() + 3600
    child = multiprocessing.get_context("fork").Process(
        target=_delay_in_child, args=(queue_url, due)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert ledger.pending() == [due]
    assert ledger_for(f"http://sqs.example/{uuid.uuid4().hex}").pending() == []


def _release_with_delay_in_child(name: str, endpoint: str) -> None:
    queue = open_queue(f"sqs://{name}", endpoint_url=endpoint)
    message = queue.claim(wait_seconds=5)
    assert message is not None and queue.release(message, delay_seconds=3600)


def test_an_sqs_worker_knows_what_a_forked_sibling_delayed(moto):
    name = f"siblings-{uuid.uuid4().hex[:8]}"
    queue = open_queue(f"sqs://{name}", endpoint_url=moto.endpoint)  # opened before the fork
    queue.send("retry later")
    before = time.time()
    child = multiprocessing.get_context("fork").Process(
        target=_release_with_delay_in_child, args=(name, moto.endpoint)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0
    census = queue.census()
    assert (census.waiting, census.in_flight, census.delayed) == (0, 0, 1)
    assert before + 3600 <= census.next_due <= time.time() + 3601
    queue.close()
