"""`python -m dashboard` serves the app through gunicorn (a production WSGI server).

  - gunicorn's master is the `python -m dashboard` process; it forks
    TELEMETRY_DASHBOARD_SERVER_WORKERS worker processes (each with
    TELEMETRY_DASHBOARD_SERVER_THREADS threads) that build their own app.
  - The worker-expiry sweep runs in the master, once, never in the workers (a forked worker
    has only the thread that forked, so it cannot inherit the sweeper); the master's database
    connections are left to it in each worker (`engine.dispose(close=False)`, as SQLAlchemy
    prescribes after a fork).
  - Metrics are kept in prometheus_client's multiprocess mode, in a fresh directory per start
    (PROMETHEUS_MULTIPROC_DIR, set before anything imports prometheus_client), so whichever
    worker answers /metrics reports every worker's counts.
  - gunicorn's own log lines go through pipeline.logs like everyone else's.

Behind a reverse proxy set TELEMETRY_DASHBOARD_TRUSTED_PROXIES (see dashboard.create_app): the number
of proxies whose X-Forwarded-For/-Proto/-Host headers Werkzeug's ProxyFix trusts.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger(__name__)


def prepare_multiprocess_metrics() -> tuple[str, int] | None:
    """A fresh directory for this server's metrics files, and the pid that owns it. Must run
    before prometheus_client is imported, since it picks its value store at import time; when
    something imported it already (an embedding program), each worker keeps its own counts."""
    if "prometheus_client" in sys.modules:
        log.warning("prometheus_client is loaded already: /metrics shows one worker's counts")
        return None
    path = tempfile.mkdtemp(prefix="dashboard-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path, os.getpid()


def cleanup_multiprocess_metrics(prepared: tuple[str, int] | None) -> None:
    """Remove the directory, in the master only (a worker's exit unwinds through here too)."""
    if prepared is None:
        return
    path, owner = prepared
    if os.getpid() != owner:
        return
    shutil.rmtree(path, ignore_errors=True)
    if os.environ.get(MULTIPROC_ENV) == path:
        del os.environ[MULTIPROC_ENV]


class _PipelineLogger(GunicornLogger):
    """gunicorn's error log through the root logger's handler (pipeline.logs), not its own."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True


class DashboardServer(BaseApplication):
    def __init__(
        self,
        load_app: Callable,
        *,
        bind: str,
        workers: int,
        threads: int,
        in_master: object | None = None,
        timeout: int = 120,
    ) -> None:
        """`load_app` builds the app in each worker; `in_master` is the master's own app (the
        expiry sweeper's), whose database engine each worker must leave alone."""
        self._load_app = load_app
        self._master_app = in_master
        self._options = {
            "bind": bind,
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "timeout": timeout,
            "graceful_timeout": 30,
            "logger_class": _PipelineLogger,
            "post_fork": self._post_fork,
            "child_exit": _child_exit,
            "proc_name": "telemetry-dashboard",
            # gunicorn >= 25.1 opens a control socket at one fixed path per user, which a second
            # dashboard on the same machine would fight over; nothing here uses it.
            "control_socket_disable": True,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings:  # a setting this gunicorn version does not know: skip
                self.cfg.set(key, value)

    def load(self):
        return self._load_app()

    def _post_fork(self, _server, _worker) -> None:
        if self._master_app is not None:
            self._master_app.extensions["telemetry"].engine.dispose(close=False)


def _child_exit(_server, worker) -> None:
    """Drop a dead worker's live gauges from the shared metrics files."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
