"""System jobs: scheduled jobs the pipeline itself needs, created under fixed names.

`telemetry-aggregates` computes the aggregates behind the /telemetry dashboards every day
(`python -m aggregates job`, see pipeline.system_jobs for the names and the rerun protocol).
It is an ordinary job record, so its runs, logs and published files show on the dashboard
like any other; its code tarball only holds a README, since the command runs the installed
`aggregates` package.

    python -m scheduler.system_jobs ensure                   # create what is missing
    python -m scheduler.system_jobs rerun --from 2026-12-01 --to 2026-12-05 [--wait]
"""

from __future__ import annotations

import argparse
import gzip
import io
import logging
import sys
import tarfile
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pipeline.cli import add_common_arguments, apply_config_flag, setup_logging_from_args
from pipeline.config import Settings, load_settings
from pipeline.db import init_db, make_engine, session_factory
from pipeline.errors import PipelineError
from pipeline.stores import open_store
from pipeline.system_jobs import (
    AGGREGATES_COMMAND,
    AGGREGATES_HOUR,
    AGGREGATES_JOB,
    AGGREGATES_OWNER,
    write_rerun_request,
)
from scheduler.clock import Clock
from scheduler.jobs import create_job, request_run_now, store_tarball
from scheduler.models import Job, Run, RunState

log = logging.getLogger(__name__)
README = (
    b"System job of telemetry-pipeline: computes the aggregates behind /telemetry/dist and\n"
    b"/telemetry/evo with the installed `aggregates` package (python -m aggregates --help).\n"
)
TIMEOUT_MINUTES = 180


def readme_tarball() -> bytes:
    """A reproducible tarball holding only the README (the code is the installed package)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("README.txt")
        info.size, info.mode = len(README), 0o644
        archive.addfile(info, io.BytesIO(README))
    return gzip.compress(buffer.getvalue(), mtime=0)


def ensure_aggregates_job(settings: Settings, sessions: sessionmaker) -> tuple[Job, bool]:
    """The aggregates job, created (daily, AGGREGATES_HOUR UTC) when missing; (job, created).

    An existing job of that name is left as its admins left it (disabled, another hour...).
    """
    with sessions() as session:
        job = session.scalar(select(Job).where(Job.name == AGGREGATES_JOB))
        if job is not None:
            return job, False
    key = store_tarball(settings, AGGREGATES_JOB, readme_tarball())
    with sessions() as session:
        job = create_job(
            session,
            name=AGGREGATES_JOB,
            owner=AGGREGATES_OWNER,
            tarball_key=key,
            command=AGGREGATES_COMMAND,
            output_dir="output",
            frequency="daily",
            hour=AGGREGATES_HOUR,
            timeout_minutes=TIMEOUT_MINUTES,
            runner="local",
        )
    log.info("created the system job %s (daily at %02d:00 UTC)", AGGREGATES_JOB, AGGREGATES_HOUR)
    return job, True


def request_rerun(
    settings: Settings,
    session: Session,
    job: Job,
    first: str,
    last: str,
    *,
    clock: Clock | None = None,
) -> Run:
    """Recompute `first`..`last` on the next run, and queue that run now."""
    clock = clock or Clock()
    public = open_store(settings.public_url, endpoint_url=settings.s3_endpoint_url)
    write_rerun_request(public, first, last, clock.now(), job.name)
    return request_run_now(session, job, clock=clock)


def _wait(sessions: sessionmaker, run_id: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sessions() as session:
            state = session.get(Run, run_id).state
        if RunState(state).finished:
            return state
        time.sleep(1.0)
    return "still running"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scheduler.system_jobs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("ensure", help="create the system jobs that are missing")
    rerun = commands.add_parser(
        "rerun", help="recompute the aggregates of a date range (a run of the system job)"
    )
    rerun.add_argument("--from", dest="first", required=True, help="YYYY-MM-DD or YYYYMMDD")
    rerun.add_argument("--to", dest="last", help="last date, inclusive (default: --from)")
    rerun.add_argument(
        "--wait", action="store_true", help="wait for the run (needs `python -m scheduler`)"
    )
    add_common_arguments(parser)
    apply_config_flag(argv)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        setup_logging_from_args("scheduler", args, settings)
        engine = make_engine(settings.database_url)
        init_db(engine)
        sessions = session_factory(engine)
        job, created = ensure_aggregates_job(settings, sessions)
        if args.command == "ensure":
            print(f"{job.name}: {'created' if created else 'exists'}")
            return 0
        with sessions() as session:
            run = request_rerun(settings, session, job, args.first, args.last or args.first)
        print(
            f"run {run.id} of {job.name} queued to recompute {args.first}..{args.last or args.first}"
        )
        if args.wait:
            state = _wait(sessions, run.id, TIMEOUT_MINUTES * 60)
            print(f"run {run.id}: {state}")
            return 0 if state == RunState.succeeded.value else 1
        return 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
