"""The dashboard's background sweep that warns about and terminates expiring workers.

`python -m dashboard` starts one `ExpirySweeper` thread; it calls
`dashboard.workers.lifecycle.expire_workers` every EXPIRY_INTERVAL_SECONDS. The scheduler
service does not do this: workers belong to the dashboard, and imports never point upward.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading

from flask import Flask

from dashboard.workers import get_provider
from dashboard.workers.lifecycle import expire_workers
from scheduler.models import utcnow

log = logging.getLogger(__name__)

# The sweeper is a thread of gunicorn's master, which forks a worker at start and whenever one
# dies. A fork in the middle of a sweep leaves the child holding whatever the sweep held at
# that instant (a module's import lock, a library's lock) with no thread to release it, and the
# worker hangs on its first use of it: it never answers. So a fork waits for the sweep in
# progress, and no sweep starts while a fork is under way. Reentrant: a sweep that forks (a
# subprocess with a preexec function) passes its own guard.
_SWEEP_OR_FORK = threading.RLock()
os.register_at_fork(
    before=_SWEEP_OR_FORK.acquire,
    after_in_parent=_SWEEP_OR_FORK.release,
    after_in_child=_SWEEP_OR_FORK.release,
)


def sweep_once(app: Flask, now: dt.datetime | None = None) -> dict[str, int]:
    state = app.extensions["telemetry"]
    providers: dict = {}

    def provider_for(name: str):
        if name not in providers:
            providers[name] = get_provider(name, state.settings, app.config)
        return providers[name]

    warn = dt.timedelta(minutes=app.config["WORKER_WARN_BEFORE_MINUTES"])
    return expire_workers(state.sessions, state.settings, provider_for, now or utcnow(), warn)


class ExpirySweeper(threading.Thread):
    def __init__(self, app: Flask) -> None:
        super().__init__(name="worker-expiry", daemon=True)
        self.app = app
        self.stop_event = threading.Event()

    def run(self) -> None:
        interval = float(self.app.config["EXPIRY_INTERVAL_SECONDS"])
        metrics = self.app.extensions.get("telemetry_metrics")
        if metrics is not None:  # shows which process sweeps: there must be exactly one
            metrics.expiry_sweeper.set(1)
        while not self.stop_event.is_set():
            try:
                with _SWEEP_OR_FORK:
                    counts = sweep_once(self.app)
                if any(counts.values()):
                    log.info("worker expiry sweep: %s", counts)
            except Exception:  # keep sweeping: one bad provider call must not stop expiry for all
                log.exception("worker expiry sweep failed; retrying in %.0fs", interval)
            self.stop_event.wait(interval)

    def stop(self) -> None:
        self.stop_event.set()
