"""One firing of one schedule: record a run for every job it concerns and start the ones the
policy lets run (scheduler.policy.decide_firings: overlap and double firing)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from scheduler import policy, run_records
from scheduler.clock import naive_utc
from scheduler.executor import Executor
from scheduler.models import Job, Run, RunState
from scheduler.triggers import ScheduleKey

log = logging.getLogger(__name__)


def jobs_query(key: ScheduleKey):
    """The enabled jobs whose schedule is `key`."""
    query = select(Job).where(
        Job.enabled.is_(True), Job.frequency == key.frequency, Job.hour == key.hour
    )
    if key.frequency == "weekly":
        query = query.where(Job.day_of_week == key.day)
    elif key.frequency == "monthly":
        query = query.where(Job.day_of_month == key.day)
    return query


def fire(
    Session: sessionmaker,
    executor: Executor,
    key: ScheduleKey,
    scheduled_for: dt.datetime,
    only_job_ids: Collection[int] | None = None,
) -> list[int]:
    """Record and start the runs of every job with schedule `key` for `scheduled_for`.

    Returns the ids of the runs started. Already-recorded firings are skipped (double
    firing), busy jobs get a `missed` run (overlap), expired jobs are ignored.
    """
    key = ScheduleKey(*key)
    scheduled_for = naive_utc(scheduled_for)
    started: list[tuple[Run, Job]] = []
    with Session() as session:
        jobs = {
            job.id: job
            for job in session.scalars(jobs_query(key))
            if policy.fires_at(job, scheduled_for, only_job_ids)
        }
        if not jobs:
            return []
        recorded = set(
            session.scalars(
                select(Run.job_id).where(
                    Run.job_id.in_(list(jobs)), Run.scheduled_for == scheduled_for
                )
            )
        )
        busy = executor.busy_job_ids(session)
        now = executor.now()
        runs = []
        for decision in policy.decide_firings(jobs, recorded, busy):
            if decision.state == RunState.running:
                runs.append(
                    Run(
                        job_id=decision.job_id,
                        scheduled_for=scheduled_for,
                        state=RunState.running.value,
                        started_at=now,
                    )
                )
            else:
                runs.append(
                    Run(
                        job_id=decision.job_id,
                        scheduled_for=scheduled_for,
                        state=decision.state.value,
                        finished_at=now,
                        reason=decision.reason,
                    )
                )
        for run in run_records.insert_runs(session, runs):
            job = jobs[run.job_id]
            if run.state == RunState.running.value:
                started.append((run, job))
            else:
                log.warning(
                    "job %s: firing %s recorded as missed (%s)", job.name, scheduled_for, run.reason
                )
    for run, job in started:
        executor.launch(run, job)
    return [run.id for run, _ in started]
