"""When the messages released with a delay come due, for a backend whose server cannot say.

SQS shows a message released with a delay exactly as one leased to a consumer ("not
visible"), so its `census` could not tell a delayed retry, which may not come due for hours,
from a batch another worker is finishing, which is worth waiting for. The SQS backend notes
the due time of every delay it sets here instead. A delayed message cannot be claimed before
it is due, so the due times still in the future count the delayed messages: no ids needed.

One ledger per queue URL and process, kept in shared memory and created when the queue is
first opened: processes forked after that (`python -m convert --workers N` opens the queue
before it forks its workers) share it, so a worker knows what its siblings delayed. Spawned
processes, other runs and other machines do not; their delays count as in flight.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time

log = logging.getLogger(__name__)

SLOTS = 4096
"""Pending delays one ledger notes; beyond that one more is not noted (it counts as in
flight, which errs towards waiting for it)."""

_ledgers: dict[str, DelayLedger] = {}
_ledgers_lock = threading.Lock()


class DelayLedger:
    def __init__(self) -> None:
        self._due = multiprocessing.Array("d", SLOTS)

    def add(self, due: float) -> None:
        """Note one message that becomes claimable again at `due` (time.time())."""
        with self._due.get_lock():
            now = time.time()
            for slot, value in enumerate(self._due[:]):
                if value <= now:
                    self._due[slot] = due
                    return
        log.debug("more than %d delayed messages; not noting one more", SLOTS)

    def pending(self) -> list[float]:
        """Due times still in the future, soonest first."""
        with self._due.get_lock():
            values = self._due[:]
        now = time.time()
        return sorted(value for value in values if value > now)


def ledger_for(queue_url: str) -> DelayLedger:
    """The ledger of the queue at `queue_url` in this process (and its forks)."""
    with _ledgers_lock:
        ledger = _ledgers.get(queue_url)
        if ledger is None:
            ledger = _ledgers[queue_url] = DelayLedger()
        return ledger
