"""Prometheus metrics and health checks of the health watcher (`python -m health`).

Open alerts are read from the `alerts` table when scraped (one gauge per kind), so they agree
with the dashboard's /health page; evaluations are counted as this watcher runs them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import Counter, Gauge
from sqlalchemy import Engine, func, select, text

from health.alerts import Alert
from health.anomaly import KINDS
from health.dead_letters import KIND_DEAD_LETTERS
from pipeline.metrics import CallbackCollector, new_registry


class HealthMetrics:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.registry = new_registry()
        self.evaluations = Counter(
            "health_evaluations",
            "Evaluations of the detectors, by result (ok, failed)",
            ["result"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "health_last_evaluation_timestamp_seconds",
            "When the last successful evaluation ended (Unix time)",
            registry=self.registry,
        )
        self.last_failed = False
        self.registry.register(CallbackCollector(self._open_alerts))

    def observe(self, ok: bool) -> None:
        self.evaluations.labels("ok" if ok else "failed").inc()
        self.last_failed = not ok
        if ok:
            self.last_success.set(time.time())

    def _open_alerts(self) -> Iterator[tuple[str, str, dict, float]]:
        with self.engine.connect() as conn:
            counts = dict(
                conn.execute(
                    select(Alert.kind, func.count())
                    .where(Alert.ended_at.is_(None))
                    .group_by(Alert.kind)
                ).all()
            )
        for kind in sorted({*KINDS, KIND_DEAD_LETTERS, *counts}):
            yield (
                "health_open_alerts",
                "Alerts open now, by kind",
                {"kind": kind},
                counts.get(kind, 0),
            )

    def checks(self) -> dict[str, Callable[[], None]]:
        def database() -> None:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        def evaluation() -> None:
            if self.last_failed:
                raise RuntimeError("the last evaluation failed (see the watcher's log)")

        return {"database": database, "evaluation": evaluation}
