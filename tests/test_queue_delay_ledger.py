"""The SQS backend's note of the delays it set: what its `census` counts as delayed.

SQS cannot tell a delayed message from a leased one, so the ledger is how a worker of
`python -m convert --workers N` knows what its siblings delayed: it must cross a fork.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid

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
