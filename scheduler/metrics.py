"""Prometheus metrics and health checks of the scheduler service (served by pipeline.metrics).

Run states, start lateness and next firings are read from the database when scraped, so they
are true whichever process (this service, `run-now --wait`, another scheduler) changed them;
finished runs are also counted as this service records them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import Counter, Histogram
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from pipeline.metrics import CallbackCollector, new_registry
from scheduler.models import Job, Run, RunState
from scheduler.runners import RunOutcome
from scheduler.triggers import next_run_time


class SchedulerMetrics:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.registry = new_registry()
        self.finished = Counter(
            "scheduler_runs_finished",
            "Runs this service finished, by final state",
            ["state"],
            registry=self.registry,
        )
        self.lateness = Histogram(
            "scheduler_start_lateness_seconds",
            "How late each run this service started began, against its scheduled time",
            ["trigger"],
            registry=self.registry,
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
        )
        self.registry.register(CallbackCollector(self._from_database))

    def on_started(self, run: Run) -> None:
        """SchedulerService's `on_started` hook: observe how late `run` started."""
        if run.started_at is not None:
            late = (run.started_at - run.scheduled_for).total_seconds()
            self.lateness.labels(run.trigger or "schedule").observe(max(late, 0.0))

    def on_finished(self, _run_id: int, outcome: RunOutcome) -> None:
        """SchedulerService's `on_finished` hook."""
        self.finished.labels(outcome.state.value).inc()

    def _from_database(self) -> Iterator[tuple[str, str, dict, float]]:
        latest = (
            select(Run.job_id, func.max(Run.started_at).label("started_at"))
            .where(Run.trigger == "schedule", Run.started_at.is_not(None))
            .group_by(Run.job_id)
            .subquery()
        )
        with Session(self.engine) as session:
            by_state = dict(
                session.execute(select(Run.state, func.count()).group_by(Run.state)).all()
            )
            lateness = session.execute(
                select(Job.name, Run.scheduled_for, Run.started_at)
                .join(Run, Run.job_id == Job.id)
                .join(
                    latest,
                    (latest.c.job_id == Run.job_id) & (latest.c.started_at == Run.started_at),
                )
            ).all()
            upcoming = [
                (job.name, next_run_time(job))
                for job in session.scalars(select(Job).where(Job.enabled.is_(True)))
            ]
        for state in RunState:
            count = by_state.get(state.value, 0)
            yield "scheduler_runs", "Runs in the database, by state", {"state": state.value}, count
        for name, scheduled_for, started_at in lateness:
            yield (
                "scheduler_last_start_lateness_seconds",
                "How late the latest scheduled run of each job started, against its schedule",
                {"job": name},
                (started_at - scheduled_for).total_seconds(),
            )
        for name, firing in upcoming:
            if firing is not None:
                yield (
                    "scheduler_next_firing_timestamp_seconds",
                    "When each enabled job fires next (Unix time)",
                    {"job": name},
                    firing.timestamp(),
                )

    def checks(self, running: Callable[[], bool]) -> dict[str, Callable[[], None]]:
        def database() -> None:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        def scheduler() -> None:
            if not running():
                raise RuntimeError("the scheduler loop is not running")

        return {"database": database, "scheduler": scheduler}
