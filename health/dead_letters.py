"""Dead-lettered batches: the work queue's dead-letter count as a health incident.

A batch whose claims failed TELEMETRY_QUEUE_MAX_ATTEMPTS times (say, during a published-store
outage that outlasted the retries) moves to the work queue's dead-letter queue and is not
published until someone runs `python -m pipeline dead-letters --redrive`. The hourly stats do
not show it (the batch was accepted, it just never gets converted), so `alerts.evaluate` reads
the count on every pass: any dead letter is an `Incident` of kind `dead_letters`, stored and
mailed like the detectors' incidents (one mail when it opens, one when the count is 0 again).

There is no history of the count, so an incident starts at the first pass that saw dead
letters and ends at the first pass that saw none. A queue that cannot be opened or read gives
no verdict (one log line, and the stored alert stays as it was), never a crash or a recovery.
"""

from __future__ import annotations

import datetime as dt
import logging

from health.anomaly import Incident
from pipeline.config import hide_url_passwords
from pipeline.queues import open_work_queue

log = logging.getLogger(__name__)

KIND_DEAD_LETTERS = "dead_letters"
WHAT = "dead-lettered batches"
SUBJECT_MAX = 64  # the alerts table's subject column


def queue_subject(url: str) -> str:
    """Where an incident is: the queue URL without its password, shortened to fit the column."""
    where = hide_url_passwords(url)
    if len(where) <= SUBJECT_MAX:
        return where
    scheme, _, rest = where.partition("://")
    head = f"{scheme}://…"
    tail = rest[-(SUBJECT_MAX - len(head)) :]
    if "/" in tail[1:]:
        tail = tail[tail.index("/", 1) :]  # start at a path separator: `…/var/queue.db`
    return head + tail


def read_dead_letter_count(settings) -> int | None:
    """How many dead letters the configured work queue holds; None when it cannot be read.

    Opens the queue with `open_work_queue(settings)` as every service does (so an SQS
    queue keeps the configured dead-letter limit). Any failure is logged as one line naming
    TELEMETRY_QUEUE_URL and gives None: the caller skips the check for this pass.
    """
    queue = None
    try:
        queue = open_work_queue(settings)
        return queue.dead_letter_count()
    except Exception as exc:  # noqa: BLE001 - an unusable queue must not end the watcher
        problem = " ".join(str(exc).split()) or type(exc).__name__
        log.warning(
            "dead-letter check skipped this pass: cannot read the work queue "
            "TELEMETRY_QUEUE_URL=%s: %s",
            hide_url_passwords(settings.queue_url),
            hide_url_passwords(problem),
        )
        return None
    finally:
        if queue is not None:
            try:
                queue.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


def dead_letter_incident(
    count: int, queue_url: str, max_attempts: int, now: dt.datetime
) -> Incident | None:
    """The ongoing incident `count` dead letters make at `now`, or None for an empty queue."""
    if count <= 0:
        return None
    where = queue_subject(queue_url)
    batches = "batch" if count == 1 else "batches"
    return Incident(
        KIND_DEAD_LETTERS,
        where,
        now,
        None,
        now,
        0.0,
        float(count),
        f"{count:,} {batches} in the dead-letter queue of {where} after {max_attempts} failed "
        "claims each (TELEMETRY_QUEUE_MAX_ATTEMPTS); they are not published until redriven. "
        "List them with `python -m pipeline dead-letters`; once the cause is fixed (say, a "
        "published-store outage), put them back with `python -m pipeline dead-letters --redrive`.",
    )
