"""The scheduler service: APScheduler decides *when*, the jobs table decides *what*, runners
decide *where*. This module only wires the pieces and owns their lifecycle:

- scheduler.alarms: one APScheduler alarm per distinct schedule (scheduler.triggers), kept in
  step with the jobs table every `sync_seconds`; when one goes off, scheduler.firing records
  a run for every enabled job with that schedule and starts it.
- scheduler.policy (pure): double firing (the unique (job_id, scheduled_for) insert is the
  claim), overlap (a firing while the job's previous run is going is recorded `missed` with
  reason "overlap: ..."), missed firings after a restart (the latest runs once within
  `grace_seconds`, the others are recorded `missed`) and lost runs (`running` rows no live
  service executes become `lost`), applied on start by scheduler.recovery.
- scheduler.executor: runs a claimed run on its own thread through the job's runner
  (scheduler.runners), records the outcome and mails the owner.
- every `dispatch_seconds`: queued manual runs start when their job is free and cancels reach
  the runners (scheduler.dispatch), ended jobs are announced (scheduler.expiry), the heartbeat
  is refreshed (scheduler.heartbeat).
- On SIGTERM the service cancels its active runs (process groups killed, state `cancelled`,
  reason "cancelled: the scheduler service stopped") and exits.
Every time read goes through the injectable clock (scheduler.clock), for tests and the benchmark.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Collection

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Session

from pipeline.config import Settings
from pipeline.db import init_db, make_engine, session_factory
from scheduler import alarms, dispatch, expiry, firing, policy, recovery, run_records
from scheduler.clock import UTC, Clock, naive_utc
from scheduler.config import SchedulerConfig, load_scheduler_config
from scheduler.executor import Executor
from scheduler.heartbeat import Heartbeat
from scheduler.models import Job, Run
from scheduler.runners import Runner, RunnerPool, RunOutcome, RunRequest
from scheduler.triggers import ScheduleKey

log = logging.getLogger(__name__)


class SchedulerService:
    def __init__(
        self,
        settings: Settings,
        config: SchedulerConfig | None = None,
        *,
        clock: Clock | None = None,
        runners: dict[str, Runner] | None = None,
        engine=None,
        on_finished: Callable[[int, RunOutcome], None] | None = None,
        on_started: Callable[[Run], None] | None = None,
    ) -> None:
        self.settings = settings
        self.config = config or load_scheduler_config()
        self.clock = clock or Clock()
        self.engine = engine or make_engine(settings.database_url)
        init_db(self.engine)
        self.Session = session_factory(self.engine)
        self.runners = RunnerPool(settings, self.config, runners)
        self.executor = Executor(
            settings,
            self.config,
            self.clock,
            self.Session,
            self.runners,
            on_started=on_started,
            on_finished=on_finished,
        )
        self.alarms = alarms.Alarms(self.clock, self.fire_key)
        self.heartbeat = Heartbeat(self.Session, self.clock)
        self._scheduler: BackgroundScheduler | None = None
        self.stopped = threading.Event()

    # -- plumbing -------------------------------------------------------------------------
    def runner(self, kind: str) -> Runner:
        return self.runners.get(kind)

    def now(self) -> dt.datetime:
        return naive_utc(self.clock.now())

    def active_run_ids(self) -> set[int]:
        return self.executor.active_run_ids()

    def running(self) -> bool:
        """True between start() and stop(), while APScheduler drives the service."""
        return self._scheduler is not None and self._scheduler.running

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Recover from the last shutdown, then let APScheduler drive sync/fire/dispatch."""
        self.mark_lost()
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults=policy.apscheduler_job_defaults(self.config.grace_seconds),
            executors={"default": {"type": "threadpool", "max_workers": 4}},
        )
        self._scheduler.start()
        # Alarms first, then recovery: a firing that falls between the two is caught by one of
        # them, and the unique (job, scheduled_for) makes sure not by both.
        self.sync()
        self.catch_up()
        self._scheduler.add_job(self.sync, "interval", seconds=self.config.sync_seconds, id="sync")
        self._scheduler.add_job(
            self.dispatch, "interval", seconds=self.config.dispatch_seconds, id="dispatch"
        )
        self.dispatch()
        log.info("scheduler service started (pid %s)", os.getpid())

    def stop(self, cancel_runs: bool = True, wait_seconds: float = 60.0) -> None:
        """Stop firing; cancel active runs (kill their process groups) and wait for them."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        self.executor.stop(cancel_runs, wait_seconds)
        self.heartbeat.remove()
        self.stopped.set()
        log.info("scheduler service stopped")

    # -- restart recovery -----------------------------------------------------------------
    def recover(self) -> None:
        """Mark orphaned runs lost and apply the missed-firing policy (scheduler.policy)."""
        self.mark_lost()
        self.catch_up()

    def mark_lost(self) -> None:
        """Runs still `running` in the table belong to a service that died: record them lost."""
        recovery.mark_lost(
            self.Session, self.now(), self.active_run_ids(), self.runners, self.settings
        )

    def catch_up(self, now: dt.datetime | None = None) -> None:
        """Apply the missed-firing policy to every enabled job."""
        now = naive_utc(now) if now is not None else self.now()
        grace = dt.timedelta(seconds=self.config.grace_seconds)
        recovery.catch_up(self.Session, now, grace, self.fire_key)

    # -- schedules ------------------------------------------------------------------------
    def sync(self) -> None:
        """Make APScheduler's alarms match the distinct schedules of the enabled jobs."""
        self.alarms.sync(self._scheduler, alarms.wanted_schedules(self.Session, self.now()))

    def fire_key(
        self,
        key: ScheduleKey,
        scheduled_for: dt.datetime,
        only_job_ids: Collection[int] | None = None,
    ) -> list[int]:
        """Record and start the runs of every job with schedule `key` for `scheduled_for`
        (scheduler.firing.fire); returns the ids of the runs started."""
        return firing.fire(self.Session, self.executor, key, scheduled_for, only_job_ids)

    # -- manual runs, cancellations, expiry, heartbeat ---------------------------------------
    def dispatch(self) -> None:
        """Start queued manual runs, deliver cancellations, announce expired jobs, heartbeat."""
        try:
            dispatch.start_queued(self.Session, self.executor)
            dispatch.deliver_cancels(self.Session, self.executor)
            expiry.announce_expired(self.Session, self.settings, self.now())
            self.heartbeat.beat()
        except Exception:
            log.exception("dispatch failed")

    def claim(self, session: Session, run_id: int) -> bool:
        """Atomically move a queued run to running; False when someone else got it first."""
        return run_records.claim(session, run_id, self.now())

    # -- executing runs ---------------------------------------------------------------------
    def request_for(self, run: Run, job: Job) -> RunRequest:
        return self.executor.request_for(run, job)

    def execute(
        self, request: RunRequest, runner_kind: str, job_id: int | None = None
    ) -> RunOutcome:
        """Execute a claimed run in this thread and record how it ended."""
        return self.executor.execute(request, runner_kind, job_id)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait for every active run to end (tests, `run-now --wait` in-process)."""
        return self.executor.wait_idle(timeout)

    def run_in_process(self, run_id: int) -> RunOutcome | None:
        """Claim a queued run and execute it in this thread (CLI `run-now --wait` without a service)."""
        with self.Session() as session:
            if not self.claim(session, run_id):
                return None
            run = session.get(Run, run_id)
            session.refresh(run)
            job = session.get(Job, run.job_id)
        return self.executor.run_here(run, job)
