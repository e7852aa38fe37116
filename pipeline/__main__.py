"""Shared plumbing tools: `python -m pipeline check`, `dead-letters` and `reconcile`.

`check` is the first thing to run when a service will not start: one line per setting, `OK` or
the one error that names what to change, and exit status 1 when anything is unusable.

`dead-letters` lists the work-queue messages that were dead-lettered after
TELEMETRY_QUEUE_MAX_ATTEMPTS failed claims; `--redrive` puts them all back on the queue as fresh
messages once the cause (say, a store outage) is fixed. Their batches are still in the incoming
store, since a batch is deleted there only after it was converted.

`reconcile` announces again the incoming batches that no message names (see pipeline.reconcile).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable

from pipeline.cli import add_common_arguments, apply_config_flag, setup_logging_from_args
from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError, QueueError

STORE_SETTINGS = ("incoming_url", "published_url", "public_url", "code_url")


def _checks(settings: Settings) -> list[tuple[str, str, Callable[[], None]]]:
    from pipeline.db import check_db
    from pipeline.queues import open_work_queue
    from pipeline.stores import open_store

    def store(name: str) -> Callable[[], None]:
        def run() -> None:
            opened = open_store(
                getattr(settings, name),
                setting=f"TELEMETRY_{name.upper()}",
                endpoint_url=settings.s3_endpoint_url,
            )
            try:
                opened.check()
            finally:
                opened.close()

        return run

    def queue() -> None:
        opened = open_work_queue(settings)
        try:
            opened.check()
        finally:
            opened.close()

    checks = [(f"TELEMETRY_{n.upper()}", getattr(settings, n), store(n)) for n in STORE_SETTINGS]
    checks.append(("TELEMETRY_QUEUE_URL", settings.queue_url, queue))
    checks.append(
        ("TELEMETRY_DATABASE_URL", settings.database_url, lambda: check_db(settings.database_url))
    )
    return checks


def _one_line(setting: str, exc: BaseException) -> str:
    """`SETTING: problem` on one line, however long the underlying error is."""
    if isinstance(exc, ConfigError):
        return f"{exc.setting}: {exc.problem}".splitlines()[0]
    text = str(exc).strip().splitlines()
    return f"{setting}: {type(exc).__name__}: {text[0] if text else ''}"


def run_check(settings: Settings, verbose: bool = False) -> int:
    failed = 0
    for setting, url, check in _checks(settings):
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - report every failure as one line
            failed += 1
            print(f"FAIL {_one_line(setting, exc)}")
            if verbose:
                traceback.print_exc(file=sys.stderr)
        else:
            print(f"OK   {setting} {url}")
    return 1 if failed else 0


def _describe(body: str) -> str:
    """A dead letter's batch key when its body is a batch message, else the body, on one line."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("key"), str):
        return parsed["key"]
    return " ".join(body.split())


def run_dead_letters(settings: Settings, redrive: bool = False, as_json: bool = False) -> int:
    from pipeline.queues import open_work_queue

    try:
        queue = open_work_queue(settings)
        try:
            if redrive:
                count = queue.redrive_all()
            else:
                dead = queue.dead_letters()
        finally:
            queue.close()
    except (ConfigError, QueueError) as exc:
        print(f"FAIL {_one_line('TELEMETRY_QUEUE_URL', exc)}", file=sys.stderr)
        return 1
    if redrive:
        if as_json:
            print(json.dumps({"queue": settings.queue_url, "redriven": count}))
        else:
            print(f"redrove {count} dead letter(s) back to {settings.queue_url}")
        return 0
    if as_json:
        letters = [{"id": m.id, "attempts": m.attempts, "body": m.body} for m in dead]
        print(
            json.dumps({"queue": settings.queue_url, "count": len(dead), "dead_letters": letters})
        )
        return 0
    for message in dead:
        print(f"{message.id}\tattempts={message.attempts}\t{_describe(message.body)}")
    print(f"{len(dead)} dead letter(s) in {settings.queue_url}")
    return 0


def run_reconcile(
    settings: Settings,
    dry_run: bool = False,
    older_than: float | None = None,
    as_json: bool = False,
) -> int:
    from pipeline.errors import PipelineError
    from pipeline.reconcile import Reconciler

    try:
        reconciler = Reconciler.open(settings)
        try:
            report = reconciler.run_once(dry_run=dry_run, older_than=older_than)
        finally:
            reconciler.close()
    except PipelineError as exc:
        print(f"FAIL {_one_line('TELEMETRY_QUEUE_URL', exc)}", file=sys.stderr)
        return 1
    if as_json:
        print(
            json.dumps(
                {
                    "objects": report.objects,
                    "stranded": [info.key for info in report.stranded],
                    "reannounced": report.sent,
                }
            )
        )
        return 0
    for info in report.stranded:
        print(f"{'stranded' if dry_run else 're-announced'}\t{info.key}\t{info.size} bytes")
    print(report.line())
    return 0


def run_db(settings: Settings, action: str) -> int:
    """`db current`: the database's schema revision; `db upgrade`: migrate it to the newest."""
    from pipeline import migrate
    from pipeline.db import check_db, init_db, make_engine

    try:
        check_db(settings.database_url)
    except ConfigError as exc:
        print(f"FAIL {_one_line('TELEMETRY_DATABASE_URL', exc)}", file=sys.stderr)
        return 1
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            before = migrate.current(conn)
        if action == "upgrade":
            init_db(engine)  # under the start-up lock, as every service does
            with engine.connect() as conn:
                after = migrate.current(conn)
            print(f"database at revision {after} (head); was {before or 'not migrated'}")
            return 0
    finally:
        engine.dispose()
    head = migrate.head()
    if before == head:
        print(f"{before} (head)")
    else:
        print(
            f"{before or 'not migrated'} (head is {head}: `python -m pipeline db upgrade`, "
            "or start any service, migrates it)"
        )
    return 0


def run_config(settings: Settings) -> int:
    """Every effective setting, secrets and URL passwords hidden."""
    print(
        "# effective settings: defaults < TELEMETRY_CONFIG file < TELEMETRY_* environment\n"
        "# (each service's --help shows the ones it reads and its own flags)"
    )
    print(settings.describe())
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Shared plumbing tools for the telemetry pipeline.",
        epilog="The effective settings: python -m pipeline config",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(parser, "WARNING")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "config",
        help="print every effective setting (secrets hidden)",
        description="Print every effective setting as NAME=value: built-in defaults, then the "
        "TOML file named by TELEMETRY_CONFIG, then TELEMETRY_* environment variables. Secrets "
        "(TELEMETRY_CLIENT_ADDRESS_HASH_KEY, TELEMETRY_JOB_AWS_SECRET_ACCESS_KEY) and passwords "
        "in URLs show as ***. A service's own section (TELEMETRY_SCHEDULER_*, "
        "TELEMETRY_DASHBOARD_*) is in its --help.",
    )
    check = commands.add_parser(
        "check",
        help="open every configured store, queue and database; print OK or the error for each",
        description="Open every configured store, queue and database and print OK or the one-line "
        "error for each. Exit status 1 when any is unusable.",
    )
    check.add_argument(
        "-v", "--verbose", action="store_true", help="also print tracebacks (default: off)"
    )
    dead = commands.add_parser(
        "dead-letters",
        help="list the work queue's dead letters, or --redrive them back onto the queue",
        description="List the messages the work queue dead-lettered after "
        "TELEMETRY_QUEUE_MAX_ATTEMPTS failed claims: one line each (id, attempts, batch key or "
        "body), then the count. Their batches stay in the incoming store, so once the cause is "
        "fixed (say, a published-store outage that outlasted the retries) --redrive puts them "
        "back as fresh messages, attempts counted from zero. Exit status 1, with one line on "
        "stderr, when the queue is unusable.",
    )
    dead.add_argument(
        "--redrive",
        action="store_true",
        help="move every dead letter back onto the work queue and print how many "
        "(default: only list them)",
    )
    dead.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object instead: {"queue", "count", "dead_letters": [{"id", '
        '"attempts", "body"}]}, or {"queue", "redriven"} with --redrive (default: text)',
    )
    reconcile = commands.add_parser(
        "reconcile",
        help="announce again the incoming batches no work-queue message names (a queue that lost data)",
        description="List the incoming store (TELEMETRY_INCOMING_URL) and the work queue, and send "
        "a new message for every batch older than TELEMETRY_QUEUE_LEASE_SECONDS + "
        "TELEMETRY_RECONCILE_MARGIN_SECONDS that no message names: batches a queue lost (a Redis "
        "restarted without its data, a purged SQS queue) would otherwise never be converted. "
        "SQS cannot list its messages, so there only batches older than its message retention "
        "(plus the margin) count. Duplicates are harmless: converting is idempotent. The health "
        "watcher runs this every TELEMETRY_RECONCILE_INTERVAL_SECONDS.",
    )
    reconcile.add_argument(
        "--dry-run", action="store_true", help="only list the stranded batches (default: announce)"
    )
    reconcile.add_argument(
        "--older-than",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the age a batch must reach instead of the lease plus the margin; on SQS the only "
        "test (e.g. 0 right after purging the queue re-announces every waiting batch)",
    )
    reconcile.add_argument(
        "--json",
        action="store_true",
        help='print {"objects", "stranded": [keys], "reannounced"} (default: text)',
    )
    db = commands.add_parser(
        "db",
        help="show the app database's schema revision, or migrate it to the newest",
        description="The app database (TELEMETRY_DATABASE_URL) is migrated with Alembic. "
        "Every service migrates it at start-up under a lock (one process migrates, the others "
        "wait); `upgrade` does the same by hand, `current` shows the revision.",
    )
    db.add_argument("action", choices=("upgrade", "current"), help="what to do")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        apply_config_flag(argv)
        settings = load_settings()
    except ConfigError as exc:
        print(f"FAIL {exc}")
        return 1
    setup_logging_from_args("pipeline", args, settings, default_level="WARNING")
    if args.command == "check":
        return run_check(settings, verbose=args.verbose)
    if args.command == "dead-letters":
        return run_dead_letters(settings, redrive=args.redrive, as_json=args.json)
    if args.command == "reconcile":
        return run_reconcile(settings, args.dry_run, args.older_than, args.json)
    if args.command == "config":
        return run_config(settings)
    if args.command == "db":
        return run_db(settings, args.action)
    return 2


if __name__ == "__main__":
    sys.exit(main())
