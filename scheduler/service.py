"""The scheduler service: APScheduler decides *when*, the jobs table decides *what*, runners
decide *where*.

- One APScheduler job per distinct schedule (e.g. "daily at 12"), each with the CronTrigger
  from scheduler.triggers; when it goes off, every enabled job with that schedule gets a Run
  row for that instant. A periodic `sync` re-reads the jobs table so jobs created or edited
  by the dashboard are scheduled within `sync_seconds`.
- Double firing is impossible: (job_id, scheduled_for) is unique in the runs table; the
  insert is the claim.
- Overlap policy: never two runs of one job at once. A scheduled firing while the previous
  run is still going is recorded as `missed` with reason "overlap: ..."; a manual run waits
  in `scheduled` until the job is free.
- Missed-firing policy (on start): for each job, firings since its last recorded scheduled
  run (or its creation) that the service did not see: the most recent one runs once if it is
  younger than `grace_seconds`, every other one is recorded as `missed`.
- Runs found `running` on start belong to a service that died: they become `lost`.
- On SIGTERM the service cancels its active runs (process groups killed, state `cancelled`,
  reason "scheduler service stopped") and exits.
The clock is injectable (scheduler.clock) for tests and the benchmark.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pipeline.config import Settings
from pipeline.db import init_db, make_engine, session_factory
from scheduler.clock import UTC, Clock, naive_utc
from scheduler.config import SchedulerConfig, load_scheduler_config
from scheduler.jobs import owner_is_admin
from scheduler.models import Job, Run, RunState, SchedulerHeartbeat
from scheduler.notify import notify_expired, notify_run
from scheduler.runners import Runner, RunOutcome, RunRequest, make_runner
from scheduler.triggers import (
    ClockTrigger,
    firings_between,
    latest_firing,
    schedule_key,
    trigger_for_key,
)

log = logging.getLogger(__name__)

MAX_MISSED_RECORDS = 100


@dataclasses.dataclass
class ActiveRun:
    run_id: int
    job_id: int
    request: RunRequest
    thread: threading.Thread | None = None


def _key_id(key: tuple) -> str:
    return "fire:" + ":".join(str(part) for part in key)


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
    ) -> None:
        self.settings = settings
        self.config = config or load_scheduler_config()
        self.clock = clock or Clock()
        self.engine = engine or make_engine(settings.database_url)
        init_db(self.engine)
        self.Session = session_factory(self.engine)
        self._runners = dict(runners or {})
        self._active: dict[int, ActiveRun] = {}
        self._lock = threading.RLock()
        self._scheduled_keys: set[tuple] = set()
        self._scheduler: BackgroundScheduler | None = None
        self._heartbeat_id: int | None = None
        self._on_finished = on_finished
        self.stopped = threading.Event()
        self._stopping = False

    # -- plumbing -------------------------------------------------------------------------
    def runner(self, kind: str) -> Runner:
        if kind not in self._runners:
            self._runners[kind] = make_runner(kind, self.settings, self.config)
        return self._runners[kind]

    def now(self) -> dt.datetime:
        return naive_utc(self.clock.now())

    def active_run_ids(self) -> set[int]:
        with self._lock:
            return set(self._active)

    def _busy_job_ids(self, session: Session) -> set[int]:
        with self._lock:
            busy = {active.job_id for active in self._active.values()}
        busy |= set(session.scalars(select(Run.job_id).where(Run.state == RunState.running.value)))
        return busy

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Recover from the last shutdown, then let APScheduler drive sync/fire/dispatch."""
        self.mark_lost()
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(max(self.config.grace_seconds, 1)),
            },
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
        with self._lock:
            active = list(self._active.values())
        if cancel_runs:
            self._stopping = True
            for item in active:
                item.request.cancel.set()
        for item in active:
            if item.thread is not None:
                item.thread.join(wait_seconds)
        if self._heartbeat_id is not None:
            with self.Session() as session:
                session.query(SchedulerHeartbeat).filter_by(id=self._heartbeat_id).delete()
                session.commit()
            self._heartbeat_id = None
        self.stopped.set()
        log.info("scheduler service stopped")

    # -- restart recovery -----------------------------------------------------------------
    def recover(self) -> None:
        """Mark orphaned runs lost and apply the missed-firing policy (see module docstring)."""
        self.mark_lost()
        self.catch_up()

    def mark_lost(self) -> None:
        """Runs still `running` in the table belong to a service that died: record them lost."""
        now = self.now()
        lost: list[tuple[str, str, int, str]] = []
        with self.Session() as session:
            for run in session.scalars(select(Run).where(Run.state == RunState.running.value)):
                if run.id in self.active_run_ids():
                    continue
                run.state = RunState.lost.value
                run.finished_at = now
                run.reason = "lost: the scheduler service stopped while the run was in progress"
                log.warning("run %s of job %s marked lost", run.id, run.job_id)
                job = session.get(Job, run.job_id)
                if job is not None:
                    lost.append((job.owner, job.name, run.id, run.reason))
                if run.instance_id:
                    try:
                        self.runner("ec2").abandon(run.instance_id)
                    except Exception as exc:  # noqa: BLE001 - cleanup is best effort
                        log.error(
                            "run %s: could not terminate instance %s: %s",
                            run.id,
                            run.instance_id,
                            exc,
                        )
            session.commit()
        if lost:  # in the background: an unreachable mail server must not delay the start
            threading.Thread(
                target=self._notify_lost, args=(lost,), name="lost-run-mail", daemon=True
            ).start()

    def _notify_lost(self, lost: list[tuple[str, str, int, str]]) -> None:
        for owner, job_name, run_id, reason in lost:
            notify_run(
                self.settings,
                owner=owner,
                job_name=job_name,
                run_id=run_id,
                state=RunState.lost.value,
                reason=reason,
                log_tail="(the run ended with the service; its log may be incomplete)",
                log_key=None,
            )

    def catch_up(self, now: dt.datetime | None = None) -> None:
        """Apply the missed-firing policy to every enabled job (one query for the last runs)."""
        now = naive_utc(now) if now is not None else self.now()
        grace = dt.timedelta(seconds=self.config.grace_seconds)
        to_fire: dict[tuple, set[int]] = {}
        with self.Session() as session:
            last_runs = dict(
                session.execute(
                    select(Run.job_id, func.max(Run.scheduled_for))
                    .where(Run.trigger == "schedule")
                    .group_by(Run.job_id)
                ).all()
            )
            missed: list[Run] = []
            for job in session.scalars(select(Job).where(Job.enabled.is_(True))):
                last = last_runs.get(job.id)
                since = max(last, job.created_at) if last else job.created_at
                firings = [naive_utc(f) for f in firings_between(job, since, now)]
                if not firings:
                    continue
                latest, older = firings[-1], firings[:-1]
                if len(older) > MAX_MISSED_RECORDS:
                    log.warning(
                        "job %s: %d missed firings; recording the last %d",
                        job.name,
                        len(older),
                        MAX_MISSED_RECORDS,
                    )
                    older = older[-MAX_MISSED_RECORDS:]
                missed += [
                    Run(
                        job_id=job.id,
                        scheduled_for=instant,
                        state=RunState.missed.value,
                        finished_at=now,
                        reason="missed: the scheduler service was not running",
                    )
                    for instant in older
                ]
                if now - latest > grace:
                    missed.append(
                        Run(
                            job_id=job.id,
                            scheduled_for=latest,
                            state=RunState.missed.value,
                            finished_at=now,
                            reason=f"missed: the service was down and the firing is older than the grace period ({grace})",
                        )
                    )
                else:
                    log.info(
                        "job %s: running missed firing %s (within the grace period)",
                        job.name,
                        latest,
                    )
                    to_fire.setdefault((schedule_key(job), latest), set()).add(job.id)
            session.add_all(missed)
            try:
                session.commit()
            except IntegrityError:  # another service recorded some of them meanwhile
                session.rollback()
                for run in missed:
                    self._insert(
                        session,
                        Run(
                            job_id=run.job_id,
                            scheduled_for=run.scheduled_for,
                            state=run.state,
                            finished_at=run.finished_at,
                            reason=run.reason,
                        ),
                    )
        for (key, instant), job_ids in to_fire.items():
            self.fire_key(key, instant, only_job_ids=job_ids)

    @staticmethod
    def _insert(session: Session, run: Run) -> bool:
        """Insert one run in its own savepoint; False when that firing is already recorded."""
        try:
            with session.begin_nested():
                session.add(run)
            session.commit()
            return True
        except IntegrityError:
            session.rollback()
            return False

    # -- schedules ------------------------------------------------------------------------
    def sync(self) -> None:
        """Make APScheduler's alarms match the distinct schedules of the enabled jobs."""
        now = self.now()
        with self.Session() as session:
            jobs = session.scalars(select(Job).where(Job.enabled.is_(True))).all()
            wanted = {
                schedule_key(job) for job in jobs if job.end_date is None or job.end_date > now
            }
        if self._scheduler is None:
            self._scheduled_keys = wanted
            return
        for key in wanted - self._scheduled_keys:
            trigger = trigger_for_key(key)
            if not self.clock.is_wall:
                trigger = ClockTrigger(trigger, self.clock)
            self._scheduler.add_job(
                self._on_alarm, trigger, args=[key], id=_key_id(key), replace_existing=True
            )
        for key in self._scheduled_keys - wanted:
            try:
                self._scheduler.remove_job(_key_id(key))
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._scheduled_keys = wanted

    def _on_alarm(self, key: tuple) -> None:
        scheduled_for = latest_firing(key, self.clock.now())
        if scheduled_for is None:
            return
        try:
            self.fire_key(key, naive_utc(scheduled_for))
        except Exception:
            log.exception("firing %s at %s failed", key, scheduled_for)

    def fire_key(
        self, key: tuple, scheduled_for: dt.datetime, only_job_ids: set[int] | None = None
    ) -> list[int]:
        """Record and start the runs of every job with schedule `key` for `scheduled_for`.

        Returns the ids of the runs started. Already-recorded firings are skipped (double
        firing), busy jobs get a `missed` run (overlap), expired jobs are ignored.
        """
        scheduled_for = naive_utc(scheduled_for)
        frequency = key[0]
        started: list[tuple[Run, Job]] = []
        with self.Session() as session:
            query = select(Job).where(
                Job.enabled.is_(True), Job.frequency == frequency, Job.hour == key[2]
            )
            if frequency == "weekly":
                query = query.where(Job.day_of_week == key[1])
            elif frequency == "monthly":
                query = query.where(Job.day_of_month == key[1])
            jobs = [
                job
                for job in session.scalars(query)
                if (job.end_date is None or job.end_date >= scheduled_for)
                and job.created_at <= scheduled_for
                and (only_job_ids is None or job.id in only_job_ids)
            ]
            if not jobs:
                return []
            job_ids = [job.id for job in jobs]
            recorded = set(
                session.scalars(
                    select(Run.job_id).where(
                        Run.job_id.in_(job_ids), Run.scheduled_for == scheduled_for
                    )
                )
            )
            busy = self._busy_job_ids(session)
            now = self.now()
            new_runs: list[tuple[Run, Job]] = []
            for job in jobs:
                if job.id in recorded:
                    continue
                if job.id in busy:
                    run = Run(
                        job_id=job.id,
                        scheduled_for=scheduled_for,
                        state=RunState.missed.value,
                        finished_at=now,
                        reason="overlap: the previous run of this job was still running",
                    )
                else:
                    run = Run(
                        job_id=job.id,
                        scheduled_for=scheduled_for,
                        state=RunState.running.value,
                        started_at=now,
                    )
                new_runs.append((run, job))
            session.add_all(run for run, _ in new_runs)
            try:
                session.commit()
                kept = new_runs
            except IntegrityError:  # another process claimed some of them: go one by one
                session.rollback()
                kept = []
                for run, job in new_runs:
                    fresh = Run(
                        job_id=run.job_id,
                        scheduled_for=run.scheduled_for,
                        state=run.state,
                        started_at=run.started_at,
                        finished_at=run.finished_at,
                        reason=run.reason,
                    )
                    if self._insert(session, fresh):
                        kept.append((fresh, job))
            for run, job in kept:
                if run.state == RunState.running.value:
                    started.append((run, job))
                else:
                    log.warning(
                        "job %s: firing %s recorded as missed (%s)",
                        job.name,
                        scheduled_for,
                        run.reason,
                    )
        for run, job in started:
            self._launch(run, job)
        return [run.id for run, _ in started]

    # -- manual runs, cancellations, expiry -------------------------------------------------
    def dispatch(self) -> None:
        """Start queued manual runs, deliver cancellations, announce expired jobs, heartbeat."""
        try:
            self._dispatch_queued()
            self._deliver_cancels()
            self._expire_jobs()
            self._heartbeat()
        except Exception:
            log.exception("dispatch failed")

    def _dispatch_queued(self) -> None:
        with self.Session() as session:
            queued = session.scalars(
                select(Run).where(Run.state == RunState.scheduled.value).order_by(Run.id)
            ).all()
            if not queued:
                return
            busy = self._busy_job_ids(session)
            for run in queued:
                if run.job_id in busy:
                    continue
                if self.claim(session, run.id):
                    busy.add(run.job_id)
                    job = session.get(Job, run.job_id)
                    session.refresh(run)
                    self._launch(run, job)

    def claim(self, session: Session, run_id: int) -> bool:
        """Atomically move a queued run to running; False when someone else got it first."""
        result = session.execute(
            update(Run)
            .where(
                Run.id == run_id,
                Run.state == RunState.scheduled.value,
                Run.cancel_requested.is_(False),
            )
            .values(state=RunState.running.value, started_at=self.now())
        )
        session.commit()
        return result.rowcount == 1

    def _deliver_cancels(self) -> None:
        ids = self.active_run_ids()
        if not ids:
            return
        with self.Session() as session:
            wanted = session.scalars(
                select(Run.id).where(Run.id.in_(ids), Run.cancel_requested.is_(True))
            ).all()
        with self._lock:
            for run_id in wanted:
                if run_id in self._active and not self._active[run_id].request.cancel.is_set():
                    log.info("run %s: cancel requested", run_id)
                    self._active[run_id].request.cancel.set()

    def _expire_jobs(self) -> None:
        now = self.now()
        with self.Session() as session:
            expired = session.scalars(
                select(Job).where(
                    Job.end_date.is_not(None),
                    Job.end_date < now,
                    Job.expiry_notified_at.is_(None),
                    Job.enabled.is_(True),
                )
            ).all()
            for job in expired:
                log.info("job %s expired (end date %s)", job.name, job.end_date)
                notify_expired(
                    self.settings, owner=job.owner, job_name=job.name, end_date=job.end_date
                )
                job.expiry_notified_at = now
            session.commit()

    def _heartbeat(self) -> None:
        with self.Session() as session:
            if self._heartbeat_id is None:
                beat = SchedulerHeartbeat(host=socket.gethostname(), pid=os.getpid())
                session.add(beat)
                session.commit()
                self._heartbeat_id = beat.id
            else:
                session.execute(
                    update(SchedulerHeartbeat)
                    .where(SchedulerHeartbeat.id == self._heartbeat_id)
                    .values(beat_at=naive_utc(Clock().now()))
                )
                session.commit()

    # -- executing runs ---------------------------------------------------------------------
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

    def _launch(self, run: Run, job: Job) -> None:
        request = self.request_for(run, job)
        active = ActiveRun(run.id, job.id, request)
        thread = threading.Thread(
            target=self.execute,
            args=(request, job.runner, job.id),
            name=f"run-{run.id}",
            daemon=True,
        )
        active.thread = thread
        with self._lock:
            self._active[run.id] = active
        log.info(
            "run %s of job %s started (scheduled for %s, runner %s)",
            run.id,
            job.name,
            run.scheduled_for,
            job.runner,
        )
        thread.start()

    def execute(
        self, request: RunRequest, runner_kind: str, job_id: int | None = None
    ) -> RunOutcome:
        """Execute a claimed run in this thread and record how it ended."""

        def on_started(fields: dict) -> None:
            if fields:
                with self.Session() as session:
                    session.execute(update(Run).where(Run.id == request.run_id).values(**fields))
                    session.commit()

        try:
            outcome = self.runner(runner_kind).execute(request, on_started)
        except Exception as exc:
            log.exception("run %s: runner crashed", request.run_id)
            outcome = RunOutcome(
                RunState.failed, f"internal error in the {runner_kind} runner: {exc}"
            )
        if (
            outcome.state == RunState.cancelled
            and self._stopping
            and not self._cancel_requested(request.run_id)
        ):
            outcome.reason = "cancelled: the scheduler service stopped"
        with self.Session() as session:
            values = dict(
                state=outcome.state.value,
                finished_at=self.now(),
                exit_code=outcome.exit_code,
                reason=outcome.reason,
                log_key=outcome.log_key,
                published_files=outcome.published_files or None,
            )
            if outcome.instance_id:
                values["instance_id"] = outcome.instance_id
            session.execute(update(Run).where(Run.id == request.run_id).values(**values))
            session.commit()
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

    def _cancel_requested(self, run_id: int) -> bool:
        with self.Session() as session:
            return bool(session.scalar(select(Run.cancel_requested).where(Run.id == run_id)))

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait for every active run to end (tests, `run-now --wait` in-process)."""
        with self._lock:
            threads = [a.thread for a in self._active.values() if a.thread is not None]
        for thread in threads:
            thread.join(timeout)
        return not self.active_run_ids()

    def run_in_process(self, run_id: int) -> RunOutcome | None:
        """Claim a queued run and execute it in this thread (CLI `run-now --wait` without a service)."""
        with self.Session() as session:
            if not self.claim(session, run_id):
                return None
            run = session.get(Run, run_id)
            session.refresh(run)
            job = session.get(Job, run.job_id)
            request = self.request_for(run, job)
            kind = job.runner
        with self._lock:
            self._active[run_id] = ActiveRun(run_id, job.id, request)
        return self.execute(request, kind)
