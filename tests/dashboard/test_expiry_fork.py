"""A fork of gunicorn's master never lands in the middle of a worker-expiry sweep.

The sweeper is a thread of the master; a worker forked while it sweeps would inherit the
locks the sweep held (an import lock, a library's) with nobody to release them, and hang on
its first request. The race is staged with events: a sweep that waits until released, and a
fork attempted meanwhile from another thread.
"""

from __future__ import annotations

import os
import threading

import pytest

from dashboard import expiry

PATIENCE = 30.0


@pytest.fixture
def held_sweep(monkeypatch):
    """A sweeper whose sweep runs until `release` is set; `sweeping` is set once it runs."""
    sweeping, release = threading.Event(), threading.Event()

    def sweep(_app):
        sweeping.set()
        release.wait(PATIENCE)
        return {}

    monkeypatch.setattr(expiry, "sweep_once", sweep)

    class App:
        config = {"EXPIRY_INTERVAL_SECONDS": 3600}
        extensions: dict = {}

    sweeper = expiry.ExpirySweeper(App())
    sweeper.start()
    assert sweeping.wait(PATIENCE)
    yield release
    release.set()
    sweeper.stop()
    sweeper.join(PATIENCE)


def fork_and_reap(forked: threading.Event) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    forked.set()
    os.waitpid(pid, 0)


def test_a_fork_waits_for_the_sweep_in_progress(held_sweep):
    forked = threading.Event()
    forker = threading.Thread(target=fork_and_reap, args=(forked,), daemon=True)
    forker.start()
    assert not forked.wait(1.0), "the fork went ahead in the middle of a sweep"
    held_sweep.set()
    assert forked.wait(PATIENCE), "the fork never happened after the sweep ended"
    forker.join(PATIENCE)
