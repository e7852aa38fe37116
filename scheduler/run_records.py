"""Writes to the runs table that the service's parts share: claiming a firing or a queued run,
and recording what a runner reported. The unique (job_id, scheduled_for) makes an insert the
claim of a firing, and a conditional update the claim of a queued run, across processes.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from scheduler.models import Run, RunState
from scheduler.runners import RunOutcome


def copy_run(run: Run) -> Run:
    """A fresh, unsaved copy of a run row's claim fields (to retry after a rollback)."""
    return Run(
        job_id=run.job_id,
        scheduled_for=run.scheduled_for,
        state=run.state,
        started_at=run.started_at,
        finished_at=run.finished_at,
        reason=run.reason,
    )


def insert_run(session: Session, run: Run) -> bool:
    """Insert one run in its own savepoint; False when that firing is already recorded."""
    try:
        with session.begin_nested():
            session.add(run)
        session.commit()
        return True
    except IntegrityError:
        session.rollback()
        return False


def insert_runs(session: Session, runs: list[Run]) -> list[Run]:
    """Insert runs in one commit, or, when another process recorded some of them meanwhile,
    one by one; returns the rows that were inserted (fresh copies after a conflict)."""
    session.add_all(runs)
    try:
        session.commit()
        return runs
    except IntegrityError:
        session.rollback()
    kept = []
    for run in runs:
        fresh = copy_run(run)
        if insert_run(session, fresh):
            kept.append(fresh)
    return kept


def claim(session: Session, run_id: int, now: dt.datetime) -> bool:
    """Atomically move a queued run to running; False when someone else got it first."""
    result = session.execute(
        update(Run)
        .where(
            Run.id == run_id,
            Run.state == RunState.scheduled.value,
            Run.cancel_requested.is_(False),
        )
        .values(state=RunState.running.value, started_at=now)
    )
    session.commit()
    return result.rowcount == 1


def record_fields(Session: sessionmaker, run_id: int, fields: dict) -> None:
    """Facts a runner reports while the run goes (e.g. its EC2 instance id)."""
    if fields:
        with Session() as session:
            session.execute(update(Run).where(Run.id == run_id).values(**fields))
            session.commit()


def record_outcome(
    Session: sessionmaker, run_id: int, outcome: RunOutcome, now: dt.datetime
) -> None:
    """How a run ended."""
    values = dict(
        state=outcome.state.value,
        finished_at=now,
        exit_code=outcome.exit_code,
        reason=outcome.reason,
        log_key=outcome.log_key,
        published_files=outcome.published_files or None,
    )
    if outcome.instance_id:
        values["instance_id"] = outcome.instance_id
    record_fields(Session, run_id, values)


def cancel_requested(Session: sessionmaker, run_id: int) -> bool:
    with Session() as session:
        return bool(session.scalar(select(Run.cancel_requested).where(Run.id == run_id)))


def running_job_ids(session: Session) -> set[int]:
    """Jobs with a run marked running in the table (by any service)."""
    return set(session.scalars(select(Run.job_id).where(Run.state == RunState.running.value)))
