"""The health watcher's Prometheus metrics, scraped after an evaluation that opened an alert."""

from __future__ import annotations

import dataclasses
import datetime as dt

from health.alerts import evaluate
from health.dead_letters import KIND_DEAD_LETTERS
from health.metrics import HealthMetrics
from pipeline.db import init_db, make_engine
from pipeline.metrics import MetricsServer
from pipeline.queues import open_work_queue
from tests.support.metrics import get_json, scrape, value


def test_scrape_after_an_evaluation_shows_the_open_alert(settings):
    settings = dataclasses.replace(settings, queue_max_attempts=1)
    engine = make_engine(settings.database_url)
    init_db(engine)
    queue = open_work_queue(settings)
    queue.send('{"key": "20260302/abc-0001.batch"}')
    while (message := queue.claim(lease_seconds=60)) is not None:
        queue.release(message)  # a failed claim: after one, the message is dead-lettered
    assert queue.dead_letter_count() == 1
    queue.close()
    metrics = HealthMetrics(engine)
    server = MetricsServer(metrics.registry, 0, checks=metrics.checks()).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        samples = scrape(base + "/metrics")
        assert value(samples, "health_open_alerts", kind=KIND_DEAD_LETTERS) == 0

        evaluate(engine, dt.datetime.now(dt.UTC), settings, recipients=[])
        metrics.observe(ok=True)
        samples = scrape(base + "/metrics")
        assert value(samples, "health_open_alerts", kind=KIND_DEAD_LETTERS) == 1
        assert value(samples, "health_open_alerts", kind="drop") == 0
        assert value(samples, "health_evaluations_total", result="ok") == 1
        assert get_json(base + "/__heartbeat__")[0] == 200

        metrics.observe(ok=False)
        status, body = get_json(base + "/__heartbeat__")
        assert status == 500 and body["checks"]["database"] == "ok"
    finally:
        server.stop()
        engine.dispose()
