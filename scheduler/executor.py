"""Executes claimed runs: builds the runner's request from the job, runs it on a thread of its
own through the job's runner, records the outcome, mails the owner, and keeps the set of runs
this service is executing (for the overlap policy, cancellation and shutdown).

The run row is already `running` when it gets here (claimed by scheduler.firing or
scheduler.dispatch); everything about *where* it runs is the runner's (scheduler.runners).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from pipeline.config import Settings
from pipeline.logs import log_context
from scheduler import run_records
from scheduler.clock import Clock, naive_utc
from scheduler.config import SchedulerConfig
from scheduler.jobs import owner_is_admin
from scheduler.models import Job, Run, RunState
from scheduler.notify import notify_run
from scheduler.runners import RunnerPool, RunOutcome, RunRequest

log = logging.getLogger(__name__)

STOPPED_REASON = "cancelled: the scheduler service stopped"


@dataclasses.dataclass
class ActiveRun:
    run_id: int
    job_id: int
    request: RunRequest
    thread: threading.Thread | None = None


class Executor:
    """Runs this service executes, each on its own thread; hooks observe starts and ends."""

    def __init__(
        self,
        settings: Settings,
        config: SchedulerConfig,
        clock: Clock,
        Session: sessionmaker,
        runners: RunnerPool,
        *,
        on_started: Callable[[Run], None] | None = None,
        on_finished: Callable[[int, RunOutcome], None] | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.clock = clock
        self.Session = Session
        self.runners = runners
        self._on_started = on_started
        self._on_finished = on_finished
        self._active: dict[int, ActiveRun] = {}
        self._lock = threading.RLock()
        self._stopping = False

    def now(self) -> dt.datetime:
        return naive_utc(self.clock.now())

    # -- what is running --------------------------------------------------------------------
    def active_run_ids(self) -> set[int]:
        with self._lock:
            return set(self._active)

    def busy_job_ids(self, session: Session) -> set[int]:
        """Jobs with a run going: here, or marked running in the table by another service."""
        with self._lock:
            busy = {active.job_id for active in self._active.values()}
        return busy | run_records.running_job_ids(session)

    def request_cancel(self, run_ids: set[int]) -> None:
        """Tell the runners of these active runs to stop (a user cancelled them)."""
        with self._lock:
            for run_id in run_ids:
                active = self._active.get(run_id)
                if active is not None and not active.request.cancel.is_set():
                    log.info("run %s: cancel requested", run_id)
                    active.request.cancel.set()

    def stop(self, cancel_runs: bool = True, wait_seconds: float = 60.0) -> None:
        """The service is stopping: cancel every active run (unless told not to) and wait."""
        with self._lock:
            active = list(self._active.values())
        if cancel_runs:
            self._stopping = True
            for item in active:
                item.request.cancel.set()
        for item in active:
            if item.thread is not None:
                item.thread.join(wait_seconds)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait for every active run to end (tests, `run-now --wait` in-process)."""
        with self._lock:
            threads = [a.thread for a in self._active.values() if a.thread is not None]
        for thread in threads:
            thread.join(timeout)
        return not self.active_run_ids()

    # -- running ----------------------------------------------------------------------------
    def request_for(self, run: Run, job: Job) -> RunRequest:
        with self.Session() as session:
            admin = owner_is_admin(session, job.owner)
        return RunRequest(
            run_id=run.id,
            job_name=job.name,
            owner=job.owner,
            tarball_key=job.tarball_key,
            command=job.command,
            output_dir=job.output_dir,
            timeout_minutes=job.timeout_minutes,
            timeout_seconds=job.timeout_minutes * self.config.timeout_unit_seconds,
            owner_is_admin=admin,
        )

    def launch(self, run: Run, job: Job) -> None:
        """Execute a claimed run on a thread of its own."""
        request = self.request_for(run, job)
        thread = threading.Thread(
            target=self._execute_logged,
            args=(request, job.runner, job.id),
            name=f"run-{run.id}",
            daemon=True,
        )
        with self._lock:
            self._active[run.id] = ActiveRun(run.id, job.id, request, thread)
        log.info(
            "run %s of job %s started (scheduled for %s, runner %s)",
            run.id,
            job.name,
            run.scheduled_for,
            job.runner,
        )
        thread.start()
        if self._on_started:
            self._on_started(run)

    def run_here(self, run: Run, job: Job) -> RunOutcome:
        """Execute a claimed run in this thread (CLI `run-now --wait` without a service)."""
        request = self.request_for(run, job)
        with self._lock:
            self._active[run.id] = ActiveRun(run.id, job.id, request)
        with log_context(run=request.run_id, job=request.job_name):
            return self.execute(request, job.runner)

    def _execute_logged(self, request: RunRequest, runner_kind: str, job_id: int) -> None:
        """`execute` with the run id and job name as fields of every line it logs."""
        with log_context(run=request.run_id, job=request.job_name):
            self.execute(request, runner_kind, job_id)

    def execute(
        self, request: RunRequest, runner_kind: str, job_id: int | None = None
    ) -> RunOutcome:
        """Execute a claimed run in this thread and record how it ended."""
        try:
            outcome = self.runners.get(runner_kind).execute(
                request,
                lambda fields: run_records.record_fields(self.Session, request.run_id, fields),
            )
        except Exception as exc:
            log.exception("run %s: runner crashed", request.run_id)
            outcome = RunOutcome(
                RunState.failed, f"internal error in the {runner_kind} runner: {exc}"
            )
        if (
            outcome.state == RunState.cancelled
            and self._stopping
            and not run_records.cancel_requested(self.Session, request.run_id)
        ):
            outcome.reason = STOPPED_REASON
        run_records.record_outcome(self.Session, request.run_id, outcome, self.now())
        log.info(
            "run %s of job %s ended: %s (%s)",
            request.run_id,
            request.job_name,
            outcome.state.value,
            outcome.reason,
        )
        notify_run(
            self.settings,
            owner=request.owner,
            job_name=request.job_name,
            run_id=request.run_id,
            state=outcome.state.value,
            reason=outcome.reason,
            log_tail=outcome.log_tail,
            log_key=outcome.log_key,
        )
        with self._lock:
            self._active.pop(request.run_id, None)
        if self._on_finished:
            self._on_finished(request.run_id, outcome)
        return outcome
