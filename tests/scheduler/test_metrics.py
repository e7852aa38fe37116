"""The scheduler's Prometheus metrics and health endpoints, scraped after a finished run."""

from __future__ import annotations

import datetime as dt

from pipeline.db import make_engine
from pipeline.metrics import MetricsServer
from scheduler.clock import FakeClock
from scheduler.metrics import SchedulerMetrics
from scheduler.models import RunState
from scheduler.service import SchedulerService
from tests.support.metrics import get_json, scrape, value
from tests.support.scheduler import T0, RecordingRunner, add_job


def test_scrape_after_a_finished_run_shows_states_lateness_and_next_firing(
    settings,
    config,  # noqa: F811
    Session,  # noqa: F811
):
    add_job(Session, settings, "late", created=T0 - dt.timedelta(hours=1))
    add_job(Session, settings, "off", enabled=False)
    metrics = SchedulerMetrics(make_engine(settings.database_url))
    late = dt.timedelta(minutes=40)
    service = SchedulerService(
        settings,
        config,
        clock=FakeClock(T0 + late),
        runners={"local": RecordingRunner()},
        on_finished=metrics.on_finished,
        on_started=metrics.on_started,
    )
    server = MetricsServer(metrics.registry, 0, checks=metrics.checks(service.running)).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        service.recover()  # the missed 12:00 firing, within the grace period: runs 40 min late
        assert service.wait_idle()
        samples = scrape(base + "/metrics")
        assert value(samples, "scheduler_runs", state=RunState.succeeded.value) == 1
        assert value(samples, "scheduler_runs", state=RunState.failed.value) == 0
        assert value(samples, "scheduler_runs_finished_total", state="succeeded") == 1
        assert value(samples, "scheduler_last_start_lateness_seconds", job="late") == 2400
        assert value(samples, "scheduler_start_lateness_seconds_count", trigger="schedule") == 1
        assert value(samples, "scheduler_start_lateness_seconds_sum", trigger="schedule") == 2400
        assert (
            value(
                samples, "scheduler_start_lateness_seconds_bucket", trigger="schedule", le="900.0"
            )
            == 0
        )
        assert (
            value(
                samples, "scheduler_start_lateness_seconds_bucket", trigger="schedule", le="3600.0"
            )
            == 1
        )
        now = dt.datetime.now(dt.UTC)
        noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
        expected = noon if noon > now else noon + dt.timedelta(days=1)
        assert value(samples, "scheduler_next_firing_timestamp_seconds", job="late") == (
            expected.timestamp()
        )
        assert value(samples, "scheduler_next_firing_timestamp_seconds", job="off") is None
        # not started: the service's loop is not running, so the heartbeat says so
        status, body = get_json(base + "/__heartbeat__")
        assert status == 500
        assert body["checks"] == {
            "database": "ok",
            "scheduler": "RuntimeError: the scheduler loop is not running",
        }
    finally:
        server.stop()
