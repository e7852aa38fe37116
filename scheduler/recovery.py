"""Restart recovery: runs a dead service left `running` become `lost` (their runner cleans up),
and firings nobody saw while the service was down are caught up (scheduler.policy.catch_up)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Collection

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from pipeline.config import Settings
from scheduler import policy, run_records
from scheduler.models import Job, Run, RunState
from scheduler.notify import notify_run
from scheduler.runners import LostRun, RunnerPool
from scheduler.triggers import ScheduleKey, schedule_key

log = logging.getLogger(__name__)

# fire(key, scheduled_for, only_job_ids): scheduler.firing.fire bound to the service.
Fire = Callable[[ScheduleKey, dt.datetime, set[int]], object]


def mark_lost(
    Session: sessionmaker,
    now: dt.datetime,
    active: Collection[int],
    runners: RunnerPool,
    settings: Settings,
) -> None:
    """Runs still `running` in the table that this service is not executing: record them lost,
    let their runner clean up, and mail their owners (in the background)."""
    lost: list[tuple[str, str, int, str]] = []
    recorded_fields = runners.recorded_fields()
    with Session() as session:
        running = {
            run.id: run
            for run in session.scalars(select(Run).where(Run.state == RunState.running.value))
        }
        for run_id in policy.lost_run_ids(running, active):
            run = running[run_id]
            run.state = RunState.lost.value
            run.finished_at = now
            run.reason = policy.LOST
            log.warning("run %s of job %s marked lost", run.id, run.job_id)
            job = session.get(Job, run.job_id)
            if job is not None:
                lost.append((job.owner, job.name, run.id, run.reason))
            facts = LostRun(run.id, {field: getattr(run, field) for field in recorded_fields})
            try:
                runners.abandon(facts)
            except Exception as exc:  # noqa: BLE001 - cleanup is best effort
                log.error("run %s: could not clean up after the lost run: %s", run.id, exc)
        session.commit()
    if lost:  # in the background: an unreachable mail server must not delay the start
        threading.Thread(
            target=_notify_lost, args=(settings, lost), name="lost-run-mail", daemon=True
        ).start()


def _notify_lost(settings: Settings, lost: list[tuple[str, str, int, str]]) -> None:
    for owner, job_name, run_id, reason in lost:
        notify_run(
            settings,
            owner=owner,
            job_name=job_name,
            run_id=run_id,
            state=RunState.lost.value,
            reason=reason,
            log_tail="(the run ended with the service; its log may be incomplete)",
            log_key=None,
        )


def catch_up(Session: sessionmaker, now: dt.datetime, grace: dt.timedelta, fire: Fire) -> None:
    """Apply the missed-firing policy to every enabled job (one query for the last runs)."""
    to_fire: dict[tuple[ScheduleKey, dt.datetime], set[int]] = {}
    with Session() as session:
        last_runs = dict(
            session.execute(
                select(Run.job_id, func.max(Run.scheduled_for))
                .where(Run.trigger == "schedule")
                .group_by(Run.job_id)
            ).all()
        )
        missed: list[Run] = []
        for job in session.scalars(select(Job).where(Job.enabled.is_(True))):
            firings = policy.unseen_firings(job, last_runs.get(job.id), now)
            decision = policy.catch_up(firings, now, grace)
            if decision.dropped:
                log.warning(
                    "job %s: %d missed firings; recording the last %d",
                    job.name,
                    decision.dropped + policy.MAX_MISSED_RECORDS,
                    policy.MAX_MISSED_RECORDS,
                )
            missed += [
                Run(
                    job_id=job.id,
                    scheduled_for=firing.scheduled_for,
                    state=RunState.missed.value,
                    finished_at=now,
                    reason=firing.reason,
                )
                for firing in decision.missed
            ]
            if decision.run is not None:
                log.info(
                    "job %s: running missed firing %s (within the grace period)",
                    job.name,
                    decision.run,
                )
                to_fire.setdefault((schedule_key(job), decision.run), set()).add(job.id)
        run_records.insert_runs(session, missed)
    for (key, instant), job_ids in to_fire.items():
        fire(key, instant, job_ids)
