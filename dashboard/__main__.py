"""`python -m dashboard`: serve the dashboard, or manage users and API tokens.

python -m dashboard [--host 127.0.0.1] [--port 5000] [--workers N] [--threads N]
                                   serve through gunicorn (dashboard.server); the worker-expiry
                                   sweep runs once, in gunicorn's master process
python -m dashboard create-user EMAIL [--password P] [--admin]   (the first user is always an admin)
python -m dashboard create-token EMAIL [--label L]
python -m dashboard publish-wheel [--wheel FILE]       the package EC2 workers install
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from dashboard.config import load_dashboard_config
from pipeline.cli import add_common_arguments, apply_config_flag, setup_logging_from_args
from pipeline.config import COMMON_SETTINGS, load_settings
from pipeline.db import check_db
from pipeline.errors import PipelineError

log = logging.getLogger("dashboard")


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
)


def build_parser() -> argparse.ArgumentParser:
    settings = load_settings()
    config = load_dashboard_config()
    parser = argparse.ArgumentParser(
        prog="python -m dashboard",
        description="The telemetry dashboard: jobs, runs, analysis workers, published results, health.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Effective settings it reads (environment TELEMETRY_*, or a TOML file named by "
        "TELEMETRY_CONFIG;\nall of them: python -m pipeline config):\n"
        + settings.describe(SETTINGS_USED)
        + "\n\nDashboard-only settings: TELEMETRY_DASHBOARD_* variables or the [dashboard] table of\n"
        "the TOML file, e.g. TELEMETRY_DASHBOARD_SECRET_KEY, TELEMETRY_DASHBOARD_TRUSTED_PROXIES=1,\n"
        "TELEMETRY_DASHBOARD_SESSION_COOKIE_SECURE=true, TELEMETRY_DASHBOARD_WORKER_LIFETIME_HOURS=24\n"
        "(the old DASHBOARD_* names, and TELEMETRY_SECRET_KEY, TELEMETRY_SIGNUP_DOMAINS,\n"
        "TELEMETRY_METRICS_ALLOW, TELEMETRY_METRICS_TOKEN, TELEMETRY_DASHBOARD_WORKERS,\n"
        "TELEMETRY_DASHBOARD_THREADS and TELEMETRY_TRUSTED_PROXIES, still work, with a warning).\n"
        "Analysis workers (not the server's processes) on EC2\n"
        "(TELEMETRY_DASHBOARD_WORKER_PROVIDER=ec2) need TELEMETRY_DASHBOARD_WORKER_EC2_AMI and\n"
        "TELEMETRY_DASHBOARD_WORKER_EC2_INSTANCE_PROFILE (read-only access to the published store;\n"
        "no defaults: the dashboard refuses to start without them), a wheel published with\n"
        "`publish-wheel`, and take TELEMETRY_DASHBOARD_WORKER_EC2_INSTANCE_TYPE (t3.large),\n"
        "TELEMETRY_DASHBOARD_WORKER_EC2_SSH_USER (ubuntu) and TELEMETRY_EC2_ENDPOINT_URL\n"
        "(unset: AWS's own EC2 endpoint).\n"
        "Accounts: TELEMETRY_DASHBOARD_SIGNIN_LIMIT_PER_ACCOUNT ('10 per 15 minutes'),\n"
        "TELEMETRY_DASHBOARD_SIGNIN_LIMIT_PER_ADDRESS ('50 per 15 minutes'),\n"
        "TELEMETRY_DASHBOARD_RATELIMIT_STORAGE_URI (appdb://: the app database; or\n"
        "redis://host:6379/1), TELEMETRY_DASHBOARD_ACCOUNT_LINK_MAX_AGE_HOURS (24).\n"
        "Single sign-on: TELEMETRY_DASHBOARD_OIDC_ISSUER, TELEMETRY_DASHBOARD_OIDC_CLIENT_ID,\n"
        "TELEMETRY_DASHBOARD_OIDC_CLIENT_SECRET, TELEMETRY_DASHBOARD_OIDC_ALLOWED_DOMAINS,\n"
        "TELEMETRY_DASHBOARD_OIDC_ALLOWED_GROUPS, TELEMETRY_DASHBOARD_PASSWORD_SIGNIN=false for\n"
        "single sign-on only (see the README).\n\n"
        "Effective dashboard settings (TELEMETRY_DASHBOARD_* or the [dashboard] table):\n"
        + config.describe(settings.data_dir),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=5000, help="port to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=config.server_workers,
        metavar="N",
        help="gunicorn worker processes (default: %(default)s, TELEMETRY_DASHBOARD_SERVER_WORKERS)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=config.server_threads,
        metavar="N",
        help="threads per worker process (default: %(default)s, "
        "TELEMETRY_DASHBOARD_SERVER_THREADS)",
    )
    parser.add_argument(
        "--no-expiry",
        action="store_true",
        help="do not run the worker expiry sweep in this process",
    )
    add_common_arguments(parser)
    commands = parser.add_subparsers(dest="command")
    user = commands.add_parser(
        "create-user", help="add a user (prompts for the password when --password is not given)"
    )
    user.add_argument(
        "email", help="the user's email address (also where job and worker mail goes)"
    )
    user.add_argument(
        "--password", help="the password (at least 8 characters); prompted for when omitted"
    )
    user.add_argument(
        "--admin",
        action="store_true",
        help="let this user see and change every job and worker (the first user always is one)",
    )
    token = commands.add_parser("create-token", help="make an API token for a user and print it")
    token.add_argument("email", help="the user the token acts as")
    token.add_argument(
        "--label", default="cli", help="what the token is for (default: %(default)s)"
    )
    commands.add_parser(
        "expire-workers",
        help="warn about and terminate expiring workers once, then exit (for cron, when the "
        "dashboard runs under another WSGI server instead of `python -m dashboard`)",
    )
    wheel = commands.add_parser(
        "publish-wheel",
        help="put a wheel of this package in the code store (TELEMETRY_CODE_URL) for EC2 "
        "workers to install; run it once and after each upgrade",
    )
    wheel.add_argument(
        "--wheel", metavar="FILE", help="publish this wheel instead of building one from the source"
    )
    return parser


def _publish_wheel(args) -> int:
    import tempfile
    from pathlib import Path

    from dashboard.workers.wheel import build_wheel, open_code_store, publish_wheel

    try:
        store = open_code_store(load_settings())
        if args.wheel:
            key = publish_wheel(store, Path(args.wheel))
        else:
            with tempfile.TemporaryDirectory(prefix="wheel-") as out:
                key = publish_wheel(store, build_wheel(Path(out)))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"published {key}; new EC2 workers install it")
    return 0


def _expire_workers(app) -> int:
    """One sweep of what `python -m dashboard` does every EXPIRY_INTERVAL_SECONDS."""
    from dashboard.expiry import sweep_once

    counts = sweep_once(app)
    print(", ".join(f"{what}: {count}" for what, count in counts.items()))
    return 1 if counts.get("errors") else 0


def _create_user(app, args) -> int:
    from dashboard import database
    from dashboard.users import UserError, count_users, create_user

    password = args.password
    if password is None:
        password = getpass.getpass(f"Password for {args.email}: ")
        if password != getpass.getpass("Repeat the password: "):
            print("The passwords differ; nothing was created.", file=sys.stderr)
            return 1
    with app.app_context():
        # The first account is the installation's administrator: it sees every job (the demo
        # job of `make run` among them) and every worker, so its first screen is not empty.
        first = count_users(database.db()) == 0
        try:
            user = create_user(database.db(), args.email, password, admin=args.admin or first)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    note = " (the first user is an admin: sees every job and worker)" if first else ""
    print(f"created {'admin ' if user.is_admin else ''}user {user.email}{note}")
    return 0


def _create_token(app, args) -> int:
    from dashboard import database
    from dashboard.api_tokens import create_token
    from dashboard.users import find_user

    with app.app_context():
        user = find_user(database.db(), args.email)
        if user is None:
            print(
                f"error: no user {args.email}; create it with `python -m dashboard create-user {args.email}`",
                file=sys.stderr,
            )
            return 1
        _token, secret = create_token(database.db(), user, args.label)
    print(secret)
    return 0


def _serve(app, args) -> int:
    from dashboard import create_app, database
    from dashboard.expiry import ExpirySweeper
    from dashboard.server import DashboardServer
    from dashboard.users import count_users

    with app.app_context():
        if count_users(database.db()) == 0:
            log.warning(
                "first run: there are no users yet. Create the first one (an admin) with\n"
                "    %s -m dashboard create-user YOU@EXAMPLE.ORG\n"
                "(it prompts for the password), then sign in at http://%s:%s/login",
                sys.executable,
                args.host,
                args.port,
            )
    sweeper = None if args.no_expiry else ExpirySweeper(app)
    if sweeper:
        sweeper.start()
    log.info(
        "dashboard listening on http://%s:%s/ (gunicorn: %d workers x %d threads)",
        args.host,
        args.port,
        args.workers,
        args.threads,
    )
    bind = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
    try:
        DashboardServer(
            create_app, bind=bind, workers=args.workers, threads=args.threads, in_master=app
        ).run()
    finally:
        if sweeper:
            sweeper.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        apply_config_flag(argv)
        parser = build_parser()  # reads the settings for --help
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    setup_logging_from_args("dashboard", args, load_settings())
    if args.command is None:  # serving: every gunicorn worker's metrics in one directory
        from dashboard.server import cleanup_multiprocess_metrics, prepare_multiprocess_metrics

        metrics_dir = prepare_multiprocess_metrics()
        try:
            return _main(args)
        finally:
            cleanup_multiprocess_metrics(metrics_dir)
    return _main(args)


def _main(args) -> int:
    if args.command == "publish-wheel":  # needs the code store, not the app database
        return _publish_wheel(args)
    from dashboard import create_app

    try:
        check_db(load_settings().database_url)  # unreachable: one line, not a traceback
        app = create_app()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "create-user":
        return _create_user(app, args)
    if args.command == "create-token":
        return _create_token(app, args)
    if args.command == "expire-workers":
        return _expire_workers(app)
    return _serve(app, args)


if __name__ == "__main__":
    sys.exit(main())
