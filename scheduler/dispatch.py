"""The manual-run queue and cancellations: queued runs start when their job is free (never two
runs of a job at once), and a cancel requested in the table reaches the run's runner."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from scheduler import run_records
from scheduler.executor import Executor
from scheduler.models import Job, Run, RunState


def start_queued(Session: sessionmaker, executor: Executor) -> None:
    """Claim and start every queued run whose job is free, oldest first."""
    with Session() as session:
        queued = session.scalars(
            select(Run).where(Run.state == RunState.scheduled.value).order_by(Run.id)
        ).all()
        if not queued:
            return
        busy = executor.busy_job_ids(session)
        for run in queued:
            if run.job_id in busy:
                continue
            if run_records.claim(session, run.id, executor.now()):
                busy.add(run.job_id)
                job = session.get(Job, run.job_id)
                session.refresh(run)
                executor.launch(run, job)


def deliver_cancels(Session: sessionmaker, executor: Executor) -> None:
    """Pass cancel requests (set by the dashboard or the CLI) to the active runs' runners."""
    ids = executor.active_run_ids()
    if not ids:
        return
    with Session() as session:
        wanted = session.scalars(
            select(Run.id).where(Run.id.in_(ids), Run.cancel_requested.is_(True))
        ).all()
    executor.request_cancel(set(wanted))
