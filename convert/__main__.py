"""`python -m convert [--workers N] [--drain]`: run the convert workers."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import threading

import tenacity

from convert.worker import (
    EXIT_WORK_LEFT,
    WorkerOptions,
    run_worker,
    run_worker_process,
    setup_logging,
)
from pipeline.allow_list import AllowList
from pipeline.cli import (
    add_common_arguments,
    add_metrics_port_argument,
    apply_config_flag,
    with_log_format,
)
from pipeline.config import COMMON_SETTINGS, Settings, load_settings
from pipeline.errors import ConfigError, PipelineError, ServiceUnreachable

log = logging.getLogger("convert")

EXIT_STATUS = f"""\
Exit status:
  0  --drain: the queue is empty (dead letters aside: python -m pipeline dead-letters);
     without --drain: stopped by SIGTERM/SIGINT
  1  a store, the queue or the database failed (at start-up: the stores or the queue still
     unreachable after --startup-wait)
  2  configuration or usage error
  {EXIT_WORK_LEFT}  --drain ended with messages still queued that it could not claim: delayed
     retries, parked batches, batches another worker held past --drain-wait, or it was
     stopped by a signal first; run it again later
With --workers N, the worst of the workers' statuses: a failure (1, 2, or 128+N for a worker
killed by signal N) before {EXIT_WORK_LEFT} before 0; {EXIT_WORK_LEFT} becomes 0 if the queue \
is empty once all have ended."""


SETTINGS_USED = (
    *COMMON_SETTINGS,
    "incoming_url",
    "published_url",
    "queue_url",
    "database_url",
    "histogram_cache",
    "hg_base_url",
    "s3_endpoint_url",
    "sqs_endpoint_url",
    "schema_path",
    "max_decompressed_bytes",
    "dedup_window_days",
    "queue_lease_seconds",
    "queue_max_attempts",
    "metrics_port",
    "metrics_host",
    "metrics_stale_minutes",
    "allowed_doc_types",
)


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m convert",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Claim incoming batches from the work queue, validate and convert every record, and\n"
            "write it to the published store (partitioned lz4 files), the error partition\n"
            "errors/<reason>/<YYYYMMDD>/ or a parked batch that is retried later. A message is\n"
            "acknowledged and its incoming object deleted only after every output is stored.\n\n"
            "python -m convert replay --reason R [--since DATE] [--until DATE] runs the records\n"
            "kept in errors/R/ through conversion again (see its --help)."
        ),
        epilog=(
            EXIT_STATUS + "\n\n"
            "Effective settings convert reads (defaults < $TELEMETRY_CONFIG TOML < TELEMETRY_*\n"
            "environment; all of them: python -m pipeline config):\n"
            + settings.describe(SETTINGS_USED)
        ),
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes, each with its own queue client (default: 1)",
    )
    parser.add_argument(
        "--drain",
        action="store_true",
        help="process until the queue is empty, then exit 0; exit "
        f"{EXIT_WORK_LEFT} instead when messages are left that cannot be claimed (batch runs, "
        "cron, tests; see --drain-wait and the exit status below)",
    )
    parser.add_argument(
        "--drain-wait",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="with --drain, while messages are left but none can be claimed: how long to keep "
        "polling after the queue last changed before giving up. Default: the queue lease "
        f"(TELEMETRY_QUEUE_LEASE_SECONDS, {settings.queue_lease_seconds:g}), enough for a batch "
        "another worker holds to be finished, or to come back if that worker died; messages "
        "put back with a delay (parked batches, retries of failed ones) are "
        "then not waited for. An explicit SECONDS is the wait for both kinds, so a delayed "
        "batch due within it is still processed (0: give up at once)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="long-poll wait per claim when not draining (default: 5)",
    )
    parser.add_argument(
        "--park-delay",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="first delay before records published unvalidated (their Histograms.json "
        "revision could not be fetched) are validated again, and before parked records are "
        "retried; doubles each time (default: 300)",
    )
    parser.add_argument(
        "--park-max-attempts",
        type=int,
        default=12,
        metavar="N",
        help="parkings before such records go to errors/revision_unavailable (default: 12)",
    )
    parser.add_argument(
        "--retry-delay",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="delay before a failed batch is retried, times its attempt number "
        "(default: 30); after TELEMETRY_QUEUE_MAX_ATTEMPTS it is dead-lettered",
    )
    add_metrics_port_argument(
        parser, settings, note="(TELEMETRY_METRICS_HOST); with --workers N, worker i on PORT+i "
    )
    parser.add_argument(
        "--startup-wait",
        type=_seconds,
        default=300.0,
        metavar="SECONDS",
        help="at start-up, how long to keep retrying stores and a queue that do not answer "
        "(an outage, not a wrong setting) before exiting 1 (default: 300)",
    )
    add_common_arguments(parser)
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return value


def _options(args: argparse.Namespace) -> WorkerOptions:
    return WorkerOptions(
        drain=args.drain,
        drain_wait=args.drain_wait,
        poll_seconds=args.poll_seconds,
        park_delay=args.park_delay,
        park_max_attempts=args.park_max_attempts,
        retry_delay=args.retry_delay,
        metrics_port=args.metrics_port,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        apply_config_flag(argv)
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["replay"]:
        from convert import replay

        try:
            _prepare_database(settings)
            return replay.main(argv[1:], settings)
        except ServiceUnreachable as exc:
            log.error("stopping: %s", exc)
            return 1
        except ConfigError as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            return 2
        except PipelineError as exc:
            log.error("stopping: %s", exc)
            return 1
    args = build_parser(settings).parse_args(argv)
    if args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    settings = with_log_format(settings, args)  # the worker processes log alike
    setup_logging(args.log_level, settings)
    options = _options(args)
    try:
        AllowList.parse(settings.allowed_doc_types)
        _prepare_database(settings)
        _wait_for_backends(settings, args.startup_wait)
        if args.workers == 1:
            return run_worker(settings, options, args.log_level)
    except ServiceUnreachable as exc:
        log.error("stopping: still unreachable after %.0fs: %s", args.startup_wait, exc)
        return 1
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except PipelineError as exc:
        log.error("stopping: %s", exc)
        return 1
    context = _worker_context()
    children = [
        context.Process(
            target=run_worker_process,
            args=(settings, _for_worker(options, i), args.log_level, os.getpid()),
            name=f"convert-{i}",
        )
        for i in range(args.workers)
    ]
    for child in children:
        child.start()

    def _forward(signum, _frame) -> None:
        for child in children:
            if child.pid and child.is_alive():
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, _forward)
    signal.signal(signal.SIGINT, _forward)
    for child in children:
        child.join()
    codes = [child.exitcode or 0 for child in children]
    log.info("workers finished with exit codes %s", codes)
    status = combined_status(codes)
    if status == EXIT_WORK_LEFT and _queue_is_empty(settings):
        # A worker gave up on a batch a sibling was still working on (held past the lease), or
        # on a delayed one a sibling then processed: the drain did empty the queue after all.
        log.info("drain: the queue is empty now that every worker has ended")
        return 0
    return status


def _for_worker(options: WorkerOptions, index: int) -> WorkerOptions:
    """Worker `index`'s options: its own metrics port, PORT+index (Prometheus scrapes each)."""
    port = options.metrics_port + index if options.metrics_port else 0
    return dataclasses.replace(options, metrics_port=port)


def combined_status(codes: list[int]) -> int:
    """One exit status for the workers' exit codes: a failure before EXIT_WORK_LEFT before 0.

    A worker killed by signal N (exit code -N) counts as 128+N, as in a shell, so that it
    can never pass for EXIT_WORK_LEFT or success.
    """
    statuses = [128 - code if code < 0 else code for code in codes]
    failures = [s for s in statuses if s not in (0, EXIT_WORK_LEFT)]
    if failures:
        return max(failures)
    return EXIT_WORK_LEFT if EXIT_WORK_LEFT in statuses else 0


def _queue_is_empty(settings: Settings) -> bool:
    from pipeline.queues import open_work_queue

    try:
        queue = open_work_queue(settings)
        try:
            return queue.depth() == 0
        finally:
            queue.close()
    except PipelineError as exc:
        log.error("cannot tell whether the queue is empty (%s)", exc)
        return False


def _worker_context() -> multiprocessing.context.BaseContext:
    """Fork the workers from this process, which has imported the worker code already.

    With "spawn" every worker re-imported SQLAlchemy, the stores, lz4 and the histograms
    package (about 0.9 s of CPU each on the reference machine), so on two cores the start-up of
    `--workers 2` cost as much as converting a few thousand records and ate the speed-up.
    Forking is safe here because at this point this process holds no connections (the database
    engine is disposed, the queue client closed) and runs no other thread; where that is not
    so, or fork does not exist, the workers are spawned as before. (A fork server would also
    avoid the imports, but its workers are not our children, so their CPU time would escape
    the accounting of whoever runs us.)
    """
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _wait_for_backends(settings: Settings, wait: float) -> None:
    """`_check_backends`, tried again while a store or the queue does not answer (an outage:
    convert started before S3, SQS or Redis, or during their restart) for up to `wait`
    seconds. A wrong setting is a ConfigError at once."""

    def _log(state: tenacity.RetryCallState) -> None:
        log.warning(
            "waiting for the stores and the queue (%s); trying again in %.0fs",
            state.outcome.exception(),
            state.next_action.sleep,
        )

    tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(ServiceUnreachable),
        stop=tenacity.stop_after_delay(wait),
        wait=tenacity.wait_exponential(multiplier=0.25, max=10),
        before_sleep=_log,
        reraise=True,
    )(_check_backends, settings)


def _check_backends(settings: Settings) -> None:
    """Open the stores and the queue once, so a wrong URL fails here with one clear message."""
    from pipeline.queues import open_work_queue
    from pipeline.stores import open_store

    endpoint = settings.s3_endpoint_url
    open_store(settings.incoming_url, setting="TELEMETRY_INCOMING_URL", endpoint_url=endpoint)
    open_store(settings.published_url, setting="TELEMETRY_PUBLISHED_URL", endpoint_url=endpoint)
    queue = open_work_queue(settings)
    queue.close()


def _prepare_database(settings: Settings) -> None:
    """Create the tables once before the workers start, so they do not race to create them."""
    import convert.dedup  # noqa: F401 - declares convert_seen_docs on Base
    import pipeline.stats  # noqa: F401 - declares hourly_stats on Base
    from pipeline.db import check_db, init_db, make_engine

    check_db(settings.database_url)  # unreachable: one ConfigError line, not a traceback
    engine = make_engine(settings.database_url)
    init_db(engine)
    engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
