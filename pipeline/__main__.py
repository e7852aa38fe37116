"""`python -m pipeline check`: open every configured store, queue and database, say which fail.

The first thing to run when a service will not start: one line per setting, `OK` or the one
error that names what to change, and exit status 1 when anything is unusable.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable

from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError

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


def _build_parser() -> argparse.ArgumentParser:
    try:
        effective = load_settings().describe()
    except ConfigError as exc:
        effective = f"  (configuration error: {exc})"
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Shared plumbing tools for the telemetry pipeline.",
        epilog="effective settings (defaults < TELEMETRY_CONFIG file < environment):\n" + effective,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="open every configured store, queue and database; print OK or the error for each",
        description="Open every configured store, queue and database and print OK or the one-line "
        "error for each. Exit status 1 when any is unusable.",
    )
    check.add_argument(
        "-v", "--verbose", action="store_true", help="also print tracebacks (default: off)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"FAIL {exc}")
        return 1
    if args.command == "check":
        return run_check(settings, verbose=args.verbose)
    return 2


if __name__ == "__main__":
    sys.exit(main())
