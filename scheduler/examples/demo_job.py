"""Schedule the example job for `make run`: `python -m scheduler.examples.demo_job`.

`launcher` starts this once, after posting the demo submissions, as a process of its
own (the plumbing package imports no service). On a data directory without a job named
`published-summary` it schedules the example (daily at 12:00 UTC), waits until the converter
has published something, and asks for one run now, so the public output page of a new
installation is not empty. A job of that name that already exists is left as its user left it.

It also creates the `telemetry-aggregates` system job when missing and, once the demo data
has settled, runs it, so /telemetry/dist and /telemetry/evo show real distributions at once.
"""

from __future__ import annotations

import argparse
import logging
import time

from pipeline.cli import add_common_arguments, apply_config_flag, setup_logging_from_args
from pipeline.config import Settings, load_settings
from pipeline.db import init_db, make_engine, session_factory
from pipeline.stores import open_store
from scheduler.examples.build import TARBALL
from scheduler.jobs import create_job, request_run_now, store_tarball
from scheduler.models import Job
from scheduler.system_jobs import ensure_aggregates_job

log = logging.getLogger("scheduler.examples.demo_job")
DEMO_JOB = "published-summary"
DEMO_OWNER = "demo@localhost"


def schedule_demo_job(settings: Settings, wait_seconds: float = 90.0) -> bool:
    """Schedule the example and request its first run; False when the job already existed."""
    engine = make_engine(settings.database_url)
    try:
        init_db(engine)
        session_maker = session_factory(engine)
        with session_maker() as session:
            if session.query(Job.id).filter(Job.name == DEMO_JOB).first() is not None:
                return False
        # Wait first: stopped during the wait, nothing is left half done for the next start.
        _wait_for_published_data(settings, wait_seconds)
        key = store_tarball(settings, DEMO_JOB, TARBALL.read_bytes())
        with session_maker() as session:
            job = create_job(
                session,
                name=DEMO_JOB,
                owner=DEMO_OWNER,
                tarball_key=key,
                command="python summarise.py",
                output_dir="output",
                frequency="daily",
                runner="local",
            )
            log.info("scheduled the example job %s (daily at 12:00 UTC)", DEMO_JOB)
            request_run_now(session, job)
        return True
    finally:
        engine.dispose()


def _wait_for_published_data(settings: Settings, wait_seconds: float) -> None:
    published = open_store(settings.published_url, endpoint_url=settings.s3_endpoint_url)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline and next(iter(published.list("")), None) is None:
        time.sleep(1.0)


def _wait_until_settled(settings: Settings, quiet_seconds: float, wait_seconds: float) -> None:
    """Wait until nothing new has been published for `quiet_seconds` (at most `wait_seconds`)."""
    published = open_store(settings.published_url, endpoint_url=settings.s3_endpoint_url)
    deadline = time.monotonic() + wait_seconds
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = sum(1 for _ in published.list(""))
        if count != seen:
            seen, quiet_since = count, time.monotonic()
        elif count and time.monotonic() - quiet_since >= quiet_seconds:
            return
        time.sleep(1.0)


def schedule_aggregates(settings: Settings, wait_seconds: float = 90.0) -> bool:
    """Create the aggregates system job when missing and run it once the demo data settled."""
    engine = make_engine(settings.database_url)
    try:
        init_db(engine)
        sessions = session_factory(engine)
        job, created = ensure_aggregates_job(settings, sessions)
        if created:
            _wait_until_settled(settings, quiet_seconds=8.0, wait_seconds=wait_seconds)
            with sessions() as session:
                request_run_now(session, job)
        return created
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scheduler.examples.demo_job",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--wait-seconds",
        type=float,
        default=90.0,
        help="how long to wait for published data before the first run (default %(default)s)",
    )
    add_common_arguments(parser)
    apply_config_flag(argv)
    args = parser.parse_args(argv)
    settings = load_settings()
    setup_logging_from_args("demo_job", args, settings)
    if not schedule_demo_job(settings, args.wait_seconds):
        log.info("a job named %s exists already: left as it is", DEMO_JOB)
    if schedule_aggregates(settings, args.wait_seconds):
        log.info("created and ran the aggregates system job for /telemetry/dist and /evo")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
