"""`python -m ingest`: run the submission server (see README "Ingest")."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import sys
from collections.abc import Callable

from pipeline.cli import add_common_arguments, apply_config_flag, setup_logging_from_args
from pipeline.config import COMMON_SETTINGS, Settings, load_settings
from pipeline.errors import PipelineError

SETTINGS_USED = (
    *COMMON_SETTINGS,
    "spool_dir",
    "incoming_url",
    "queue_url",
    "database_url",
    "s3_endpoint_url",
    "sqs_endpoint_url",
    "queue_max_attempts",
    "max_body_bytes",
    "spool_max_file_bytes",
    "spool_max_age_seconds",
    "spool_cap_bytes",
    "spool_min_free_bytes",
    "fsync_policy",
)


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Accept telemetry submissions over HTTP, spool them durably and upload "
        "them as batches to the incoming store, announcing each on the work queue.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="effective settings it reads (TELEMETRY_* environment / TELEMETRY_CONFIG file; "
        "all of them: python -m pipeline config):\n" + settings.describe(SETTINGS_USED),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="TCP port to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--fsync-policy",
        choices=("always", "group", "none"),
        default=None,
        help="when a submission counts as stored: fsync per request, group commit, "
        f"or page cache only (default: {settings.fsync_policy}, from TELEMETRY_FSYNC_POLICY)",
    )
    parser.add_argument(
        "--no-access-log",
        action="store_true",
        help="do not write the JSON access log line per request",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds to keep uploading at shutdown before leaving batches for the next start (default: %(default)s)",
    )
    parser.add_argument(
        "--no-hourly-counts",
        action="store_true",
        help="do not add accepted counts per hour to the database (TELEMETRY_DATABASE_URL)",
    )
    add_common_arguments(parser)
    return parser


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (measured with the earlier aiohttp layer: about
    a third more requests per CPU second), else None: asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    try:
        apply_config_flag(argv)
        settings = load_settings()
    except PipelineError as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 2
    args = build_parser(settings).parse_args(argv)
    if args.fsync_policy:
        settings = load_settings(fsync_policy=args.fsync_policy)
    # One access-log line per request: written in batches, not one write each.
    setup_logging_from_args("ingest", args, settings, buffered=True)

    from ingest.app import create_app
    from ingest.server import serve

    try:
        app = create_app(
            settings, drain_timeout=args.drain_timeout, count_hourly=not args.no_hourly_counts
        )
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve(app, args.host, args.port, access_log=not args.no_access_log))
    except PipelineError as exc:
        logging.getLogger("ingest").error("%s", exc)
        return 2
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(
            f"ingest: {args.host}:{args.port} is already in use by another program; "
            "choose another port with --port",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
