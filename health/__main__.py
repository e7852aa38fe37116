"""`python -m health`: evaluate the pipeline's health on a fixed interval.

A separate small process so that neither ingest, convert nor the scheduler carries the
detectors; `make run` starts it beside the other services. It is also where the reconciler
runs (`pipeline.reconcile`, every TELEMETRY_RECONCILE_INTERVAL_SECONDS): the one process of
the pipeline that has no other work to be held up by a slow listing, and that `make run`
always starts. `--once` reconciles, evaluates and exits, for cron or a manual check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence

from health.alerts import evaluate
from health.metrics import HealthMetrics
from pipeline.cli import (
    add_common_arguments,
    add_metrics_port_argument,
    apply_config_flag,
    setup_logging_from_args,
)
from pipeline.config import COMMON_SETTINGS, hide_url_passwords, load_settings
from pipeline.db import init_db, make_engine
from pipeline.errors import ConfigError
from pipeline.metrics import serve_metrics
from pipeline.reconcile import Reconciler

log = logging.getLogger("health")


SETTINGS_USED = (
    *COMMON_SETTINGS,
    "database_url",
    "queue_url",
    "sqs_endpoint_url",
    "queue_max_attempts",
    "smtp_url",
    "mail_from",
    "alert_recipients",
    "health_interval_seconds",
    "public_base_url",
    "incoming_url",
    "queue_lease_seconds",
    "reconcile_interval_seconds",
    "reconcile_margin_seconds",
    "stale_incoming_minutes",
    "metrics_port",
    "metrics_host",
)


def recipients_of(value: str) -> list[str]:
    return [address.strip() for address in value.split(",") if address.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    apply_config_flag(argv)
    settings = load_settings()
    parser = argparse.ArgumentParser(
        prog="python -m health",
        description="Detect drops, declines and error-rate rises in the hourly stats, "
        "dead-lettered batches in the work queue (TELEMETRY_QUEUE_URL) and incoming batches "
        "older than TELEMETRY_STALE_INCOMING_MINUTES; store and mail alerts. Every "
        "TELEMETRY_RECONCILE_INTERVAL_SECONDS (0: never) also announce again the incoming "
        "batches that no queue message names (see `python -m pipeline reconcile --help`).",
        epilog="Effective settings it reads (all of them: python -m pipeline config):\n"
        + settings.describe(SETTINGS_USED),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--once", action="store_true", help="reconcile and evaluate once, then exit"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=settings.health_interval_seconds,
        help="seconds between evaluations (default %(default)s, TELEMETRY_HEALTH_INTERVAL_SECONDS)",
    )
    add_metrics_port_argument(parser, settings)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging_from_args("health", args, settings)
    engine = make_engine(settings.database_url)
    init_db(engine)
    metrics = HealthMetrics(engine)
    try:
        serve_metrics(metrics.registry, args.metrics_port, settings.metrics_host, metrics.checks())
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    recipients = recipients_of(settings.alert_recipients)
    if not recipients:
        log.info(
            "no TELEMETRY_ALERT_RECIPIENTS set: alerts are stored and shown on /health, not mailed"
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    reconciling = ReconcilePasses(settings) if settings.reconcile_interval_seconds > 0 else None
    next_evaluation = next_reconcile = time.monotonic()
    try:
        while True:
            if reconciling is not None and time.monotonic() >= next_reconcile:
                reconciling.run()
                next_reconcile = time.monotonic() + settings.reconcile_interval_seconds
            if time.monotonic() >= next_evaluation:
                try:
                    evaluate(engine, dt.datetime.now(dt.UTC), settings, recipients)
                    metrics.observe(ok=True)
                except Exception:  # noqa: BLE001 - a bad evaluation must not end the watcher
                    log.exception("health evaluation failed; trying again next interval")
                    metrics.observe(ok=False)
                    if args.once:
                        return 1
                next_evaluation = time.monotonic() + args.interval
            if args.once:
                return 0
            due = next_evaluation if reconciling is None else min(next_evaluation, next_reconcile)
            if stop.wait(max(0.0, due - time.monotonic())):
                return 0
    finally:
        if reconciling is not None:
            reconciling.close()


class ReconcilePasses:
    """The reconciler's passes in the watcher: one Reconciler kept between passes (it
    remembers what it announced), opened again after a failure, which never ends the watcher."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.reconciler: Reconciler | None = None

    def run(self) -> None:
        try:
            if self.reconciler is None:
                self.reconciler = Reconciler.open(self.settings)
            self.reconciler.run_once()
        except Exception as exc:  # noqa: BLE001 - an unusable store or queue: next pass
            problem = hide_url_passwords(" ".join(str(exc).split()) or type(exc).__name__)
            log.warning(
                "reconcile pass failed (%s); trying again in %.0fs",
                problem,
                self.settings.reconcile_interval_seconds,
            )
            self.close()

    def close(self) -> None:
        if self.reconciler is not None:
            try:
                self.reconciler.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
            self.reconciler = None


if __name__ == "__main__":
    sys.exit(main())
