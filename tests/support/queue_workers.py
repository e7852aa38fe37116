"""Worker bodies for the multiprocess queue tests, kept light so spawned children start fast."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from pipeline.queues import open_queue


def consume(url: str, holding_dir: str, result_path: str) -> None:
    """Claim until the queue is empty; prove exclusivity with O_EXCL marker files."""
    queue = open_queue(url, lease_seconds=60, max_attempts=3)
    rng = random.Random(os.getpid())
    with open(result_path, "a") as results:
        while True:
            message = queue.claim(wait_seconds=0.2)
            if message is None:
                if queue.depth() == 0:
                    return
                continue
            marker = os.path.join(holding_dir, message.id)
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                results.write(f"OVERLAP {message.id}\n")
                results.flush()
                continue
            time.sleep(rng.random() * 0.005)  # "work", so that claims interleave
            os.unlink(marker)
            acked = queue.ack(message)
            results.write(f"{message.body} {int(acked)}\n")
            results.flush()


def claim_and_hang(url: str, report_path: str) -> None:
    """Claim one message, report it, then hang until killed."""
    queue = open_queue(url, lease_seconds=1, max_attempts=5)
    message = None
    while message is None:
        message = queue.claim(wait_seconds=1)
    tmp = report_path + ".tmp"
    Path(tmp).write_text(f"{message.id} {message.body} {message.lease_deadline}")
    os.replace(tmp, report_path)
    time.sleep(3600)
