"""`python -m scheduler`: the service (no subcommand) and the job-management subcommands.

  python -m scheduler                       run the service until SIGTERM / Ctrl-C
  python -m scheduler add --name N --tarball FILE|DIR --command CMD --owner EMAIL ...
  python -m scheduler list
  python -m scheduler run-now NAME [--wait]
  python -m scheduler history NAME
  python -m scheduler cancel RUN_ID
  python -m scheduler remove NAME
  python -m scheduler release-name NAME     (admin) let others use a deleted job's name

`run-now --wait`: when a scheduler service is alive (heartbeat within 15 s) the command waits
for it to execute the run; otherwise it executes the run in this process. The claim is an
atomic update, so the run never executes twice even if a service starts meanwhile.
"""

from __future__ import annotations

import argparse
import io
import logging
import signal
import sys
import tarfile
import threading
import time
from pathlib import Path

from sqlalchemy import select

from pipeline.cli import (
    add_common_arguments,
    add_metrics_port_argument,
    apply_config_flag,
    setup_logging_from_args,
)
from pipeline.config import COMMON_SETTINGS, load_settings
from pipeline.db import check_db, init_db, make_engine, session_factory
from pipeline.errors import PipelineError
from scheduler.config import load_scheduler_config
from scheduler.errors import JobValidationError
from scheduler.job_spec import FREQUENCIES, MAX_TIMEOUT_MINUTES, RUNNERS
from scheduler.jobs import (
    cancel_run,
    check_new_job,
    create_job,
    delete_job,
    get_job,
    job_history,
    release_job_name,
    request_run_now,
    service_alive,
    store_tarball,
)
from scheduler.models import Job, Run, RunState
from scheduler.triggers import next_run_time

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
log = logging.getLogger("scheduler")


SETTINGS_USED = (
    *COMMON_SETTINGS,
    "database_url",
    "code_url",
    "public_url",
    "published_url",
    "s3_endpoint_url",
    "runner",
    "smtp_url",
    "mail_from",
    "public_base_url",
    "metrics_port",
    "metrics_host",
)


def _day_of_week(text: str) -> str:
    """A day name (mon, Monday) as its number 0-6; any other text goes to job_spec as given,
    so a bad value is refused in the same words as on the dashboard."""
    value = text.strip().lower()[:3]
    return str(DAYS.index(value)) if value in DAYS else text


def build_parser() -> argparse.ArgumentParser:
    settings = load_settings()
    config = load_scheduler_config()
    parser = argparse.ArgumentParser(
        prog="python -m scheduler",
        description="Run analysis code tarballs on a schedule and publish their output. "
        "Without a subcommand, runs the scheduler service until SIGTERM or Ctrl-C.",
        epilog="effective settings it reads (all of them: python -m pipeline config):\n"
        + settings.describe(SETTINGS_USED)
        + "\n"
        + config.describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(parser, "INFO for the service, WARNING for subcommands")
    common = argparse.ArgumentParser(add_help=False)
    add_common_arguments(common, "WARNING", suppress=True)
    parser.add_argument(
        "--sync-seconds",
        type=float,
        help=f"re-read the jobs table this often (default: {config.sync_seconds})",
    )
    parser.add_argument(
        "--grace-seconds",
        type=float,
        help=f"on start, run a missed firing younger than this once; older ones are recorded missed (default: {config.grace_seconds})",
    )
    add_metrics_port_argument(parser, settings)
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")

    add = sub.add_parser(
        "add",
        parents=[common],
        help="create a job",
        description="Create a scheduled job from a code tarball.",
    )
    add.add_argument("--name", required=True, help="unique job name: letters, digits, '_' or '-'")
    add.add_argument(
        "--tarball",
        required=True,
        type=Path,
        help="the code: a .tar.gz file, or a directory to pack",
    )
    add.add_argument(
        "--command", required=True, help="bash command line, run in the extracted directory"
    )
    add.add_argument(
        "--output-dir",
        default="output",
        help="directory (relative) whose files are published (default: %(default)s)",
    )
    # Values are checked by scheduler.job_spec, not argparse: the same messages as the dashboard.
    add.add_argument(
        "--frequency",
        default="daily",
        help=f"{', '.join(FREQUENCIES)} (default: %(default)s)",
    )
    add.add_argument(
        "--day-of-week", type=_day_of_week, help="weekly jobs: 0-6 or mon..sun (0 = Monday)"
    )
    add.add_argument(
        "--day-of-month",
        help="monthly jobs: 1-31 (29-31 fire on the last day of shorter months)",
    )
    add.add_argument("--hour", default="12", help="hour of day, UTC (default: %(default)s)")
    add.add_argument(
        "--timeout-minutes",
        default="60",
        help=f"kill the run after this long, 1-{MAX_TIMEOUT_MINUTES} (default: %(default)s)",
    )
    add.add_argument("--owner", required=True, help="email address that gets failure notices")
    add.add_argument(
        "--runner",
        default=settings.runner,
        help=f"where runs execute: {' or '.join(RUNNERS)} (default: %(default)s)",
    )
    add.add_argument("--end-date", help="last day (YYYY-MM-DD, UTC) on which the job runs")
    add.add_argument("--disabled", action="store_true", help="create the job disabled")

    sub.add_parser(
        "list",
        parents=[common],
        help="list jobs with their next run",
        description="List every job, its schedule, next and last run.",
    )

    run_now = sub.add_parser(
        "run-now",
        parents=[common],
        help="queue a run of a job now",
        description=__doc__.split("\n\n")[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_now.add_argument("name", help="job name")
    run_now.add_argument(
        "--wait",
        action="store_true",
        help="wait for the run to finish; exit 0 only if it succeeded",
    )
    run_now.add_argument(
        "--wait-seconds",
        type=float,
        default=None,
        help="give up waiting after this long (default: job timeout + 5 min)",
    )

    history = sub.add_parser(
        "history",
        parents=[common],
        help="show a job's runs",
        description="Show a job's runs, newest first.",
    )
    history.add_argument("name", help="job name")
    history.add_argument("--limit", type=int, default=20, help="(default: %(default)s)")

    cancel = sub.add_parser(
        "cancel",
        parents=[common],
        help="cancel a run",
        description="Cancel a queued or running run (the service kills it).",
    )
    cancel.add_argument("run_id", type=int, help="run id (see history)")

    remove = sub.add_parser(
        "remove",
        parents=[common],
        help="delete a job and its history",
        description="Delete a job and its run history.",
    )
    remove.add_argument("name", help="job name")

    release = sub.add_parser(
        "release-name",
        parents=[common],
        help="(admin) let anyone use a deleted job's name again",
        description=(
            "A deleted job's name stays reserved to its owner, because its published output "
            "is still served under /public/NAME/. Release it (after deleting that output if "
            "it should go) so another user may create a job with this name."
        ),
    )
    release.add_argument("name", help="job name")
    return parser


def _schedule_text(job: Job) -> str:
    if job.frequency == "weekly":
        return f"weekly {DAYS[job.day_of_week]} {job.hour:02d}:00"
    if job.frequency == "monthly":
        return f"monthly day {job.day_of_month} {job.hour:02d}:00"
    return f"daily {job.hour:02d}:00"


def _tarball_bytes(path: Path) -> bytes:
    if path.is_dir():
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for item in sorted(path.rglob("*")):
                if "__pycache__" in item.parts:
                    continue
                archive.add(item, arcname=item.relative_to(path).as_posix(), recursive=False)
        return buffer.getvalue()
    return path.read_bytes()


def cmd_add(args, settings, Session) -> int:
    config = load_scheduler_config()
    try:
        data = _tarball_bytes(args.tarball)
    except OSError as exc:
        print(f"error: cannot read --tarball {args.tarball}: {exc.strerror}", file=sys.stderr)
        return 2
    fields = dict(
        name=args.name,
        owner=args.owner,
        command=args.command,
        output_dir=args.output_dir,
        frequency=args.frequency,
        day_of_week=args.day_of_week,
        day_of_month=args.day_of_month,
        hour=args.hour,
        timeout_minutes=args.timeout_minutes,
        enabled=not args.disabled,
        end_date=args.end_date,
        runner=args.runner,
    )
    try:
        with Session() as session:  # every field's problem at once, before storing the code
            check_new_job(session, fields)
        key = store_tarball(settings, args.name, data, config)
        with Session() as session:
            job = create_job(session, tarball_key=key, **fields)
            nxt = next_run_time(job)
    except JobValidationError as exc:
        for field, message in sorted(exc.errors.items()):
            print(f"error: --{field.replace('_', '-')}: {message}", file=sys.stderr)
        return 2
    print(
        f"job {job.name} created (id {job.id}); tarball {key}; next run {nxt:%Y-%m-%d %H:%M} UTC"
        if nxt
        else f"job {job.name} created (id {job.id}); tarball {key}; no future run"
    )
    return 0


def cmd_list(args, settings, Session) -> int:
    with Session() as session:
        jobs = session.scalars(select(Job).order_by(Job.name)).all()
        print(f"{'NAME':24} {'OWNER':28} {'SCHEDULE':22} {'NEXT RUN (UTC)':17} LAST RUN")
        for job in jobs:
            last = session.scalars(
                select(Run).where(Run.job_id == job.id).order_by(Run.scheduled_for.desc()).limit(1)
            ).first()
            nxt = next_run_time(job) if job.enabled else None
            print(
                f"{job.name:24} {job.owner:28} {_schedule_text(job):22} "
                f"{(nxt.strftime('%Y-%m-%d %H:%M') if nxt else '-'):17} "
                f"{(f'#{last.id} {last.state}' if last else '-')}"
            )
    return 0


def _print_run(run: Run) -> None:
    print(f"run {run.id}: {run.state} ({run.reason or ''})")
    if run.log_key:
        print(f"log: {run.log_key}")
    for key in run.published_files or []:
        print(f"published: {key}")


def cmd_run_now(args, settings, Session) -> int:
    from scheduler.service import SchedulerService

    with Session() as session:
        job = get_job(session, args.name)
        run = request_run_now(session, job)
        alive = service_alive(session)
        limit = (
            args.wait_seconds if args.wait_seconds is not None else job.timeout_minutes * 60 + 300
        )
    print(f"run {run.id} of job {job.name} queued")
    if not args.wait:
        if not alive:
            print(
                "note: no scheduler service is running; start `python -m scheduler` or use --wait",
                file=sys.stderr,
            )
        return 0
    if not alive:
        print("no scheduler service is running: executing the run in this process")
        service = SchedulerService(settings, engine=Session.kw["bind"])
        service.run_in_process(run.id)
    deadline = time.monotonic() + limit
    while True:
        with Session() as session:
            current = session.get(Run, run.id)
            if RunState(current.state).finished:
                _print_run(current)
                return 0 if current.state == RunState.succeeded.value else 1
        if time.monotonic() > deadline:
            print(
                f"run {run.id} is still {current.state} after {limit:.0f}s; not waiting longer",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.5)


def cmd_history(args, settings, Session) -> int:
    with Session() as session:
        job = get_job(session, args.name)
        print(f"{'RUN':>6} {'SCHEDULED (UTC)':19} {'TRIGGER':8} {'STATE':10} {'EXIT':>4}  REASON")
        for run in job_history(session, job, args.limit):
            exit_code = "" if run.exit_code is None else str(run.exit_code)
            print(
                f"{run.id:>6} {run.scheduled_for:%Y-%m-%d %H:%M:%S} {run.trigger:8} {run.state:10} {exit_code:>4}  {run.reason or ''}"
            )
    return 0


def cmd_cancel(args, settings, Session) -> int:
    with Session() as session:
        run = session.get(Run, args.run_id)
        if run is None:
            print(f"error: no run {args.run_id}", file=sys.stderr)
            return 2
        run = cancel_run(session, run)
        print(
            f"run {run.id}: {run.state}"
            + (
                " (cancel requested; the service stops it shortly)"
                if run.state == "running"
                else ""
            )
        )
    return 0


def cmd_remove(args, settings, Session) -> int:
    with Session() as session:
        delete_job(session, get_job(session, args.name))
    print(f"job {args.name} deleted")
    return 0


def cmd_release_name(args, settings, Session) -> int:
    with Session() as session:
        if not release_job_name(session, args.name):
            print(f"the name {args.name} is not reserved", file=sys.stderr)
            return 1
    print(f"the name {args.name} is free for anyone to use")
    return 0


def _log_sandbox(config) -> None:
    """Say at start-up whether local runs will be sandboxed (and what happens if not)."""
    from scheduler.sandbox import available

    problem = available(config.sandbox_bwrap)
    if problem is None:
        log.info("local runs execute in a bubblewrap sandbox")
    elif config.unsafe_no_sandbox:
        log.warning("no sandbox (%s): local runs execute UNSANDBOXED (UNSAFE_NO_SANDBOX)", problem)
    else:
        log.warning("no sandbox (%s): local runs of non-admins' jobs will be refused", problem)


def run_service(args, settings) -> int:
    from pipeline.metrics import bind_metrics
    from scheduler.metrics import SchedulerMetrics
    from scheduler.service import SchedulerService

    config = load_scheduler_config(sync_seconds=args.sync_seconds, grace_seconds=args.grace_seconds)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per alarm is noise
    metrics = SchedulerMetrics(make_engine(settings.database_url))
    service = SchedulerService(
        settings, config, on_finished=metrics.on_finished, on_started=metrics.on_started
    )
    _log_sandbox(config)
    stop = threading.Event()

    def _signal(signum, _frame) -> None:
        log.info("signal %s received; stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    server = bind_metrics(
        metrics.registry, args.metrics_port, settings.metrics_host, metrics.checks(service.running)
    )
    service.start()
    if server is not None:
        server.start()  # after start(): its heartbeat checks the loop start() began
    while not stop.wait(1.0):
        pass
    service.stop()
    return 0


COMMANDS = {
    "add": cmd_add,
    "list": cmd_list,
    "run-now": cmd_run_now,
    "history": cmd_history,
    "cancel": cmd_cancel,
    "remove": cmd_remove,
    "release-name": cmd_release_name,
}


def main(argv: list[str] | None = None) -> int:
    try:
        apply_config_flag(argv)
        parser = build_parser()  # reads the settings for --help
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    default_level = "INFO" if args.subcommand is None else "WARNING"
    setup_logging_from_args("scheduler", args, load_settings(), default_level=default_level)
    try:
        settings = load_settings()
        check_db(settings.database_url)  # unreachable: one ConfigError line, not a traceback
        if args.subcommand is None:
            return run_service(args, settings)
        engine = make_engine(settings.database_url)
        init_db(engine)
        return COMMANDS[args.subcommand](args, settings, session_factory(engine))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
