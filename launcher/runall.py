"""Run the whole pipeline on one machine: `make run` / `python -m launcher`.

Starts ingest, convert workers, the scheduler service and the dashboard as child processes
on the embedded defaults (or whatever the TELEMETRY_* settings say), prints their URLs once
they listen, and stops everything cleanly on Ctrl-C or SIGTERM. On a new (missing or empty)
data directory it also sends a few demo submissions and schedules the example job, so the
first screen is not empty; a data directory in use is never given demo data again.
Data under TELEMETRY_DATA_DIR is kept between runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cli import add_common_arguments, apply_config_flag, setup_logging_from_args
from pipeline.config import load_settings

log = logging.getLogger("launcher")
STOP_GRACE_SECONDS = 20.0
DEMO_NOTE = "DEMO-DATA.txt"  # written beside the data when demo data was added


@dataclass
class Service:
    name: str
    argv: list[str]
    port: int | None = None
    url: str | None = None
    essential: bool = True  # its death stops the pipeline, its failure sets the exit status
    process: subprocess.Popen | None = field(default=None, repr=False)


def metrics_flags(port: int, workers: int) -> list[list[str]]:
    """`--metrics-port` for convert (PORT..PORT+workers-1), the scheduler and the health watcher
    (the next two), so that one TELEMETRY_METRICS_PORT does not make them collide; 0: off."""
    ports = [port, port + workers, port + workers + 1] if port else [0, 0, 0]
    return [["--metrics-port", str(p)] for p in ports]


def build_services(args: argparse.Namespace) -> list[Service]:
    py = sys.executable
    host = args.host
    metrics = metrics_flags(args.metrics_port, args.workers)
    return [
        Service(
            "ingest",
            [py, "-m", "ingest", "--host", host, "--port", str(args.ingest_port)],
            args.ingest_port,
            f"http://{host}:{args.ingest_port}/submit/telemetry/<docId>",
        ),
        Service("convert", [py, "-m", "convert", "--workers", str(args.workers)] + metrics[0]),
        Service("scheduler", [py, "-m", "scheduler"] + metrics[1]),
        Service("health", [py, "-m", "health"] + metrics[2]),
        Service(
            "dashboard",
            [py, "-m", "dashboard", "--host", host, "--port", str(args.dashboard_port)],
            args.dashboard_port,
            f"http://{host}:{args.dashboard_port}/",
        ),
    ]


def port_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on (host, port), or None when it can (checked by binding).

    Checked before anything starts: a port held by another program would otherwise answer
    our "is it up?" probe and the banner would announce a pipeline that is not running.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{host}:{port} is already in use by another program"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def check_ports(services: Sequence[Service], host: str) -> str | None:
    """The one-line error for the first port that is taken, naming the flag that changes it."""
    seen: dict[int, str] = {}
    for service in services:
        if service.port is None:
            continue
        if service.port in seen:
            return (
                f"error: --{seen[service.port]}-port and --{service.name}-port are both "
                f"{service.port}; give them different ports"
            )
        seen[service.port] = service.name
    for service in services:
        if service.port is None:
            continue
        problem = port_problem(host, service.port)
        if problem:
            flag = f"--{service.name}-port"
            return (
                f"error: {service.name}: {problem}; choose another port with {flag} PORT "
                f'(make run ARGS="{flag} {service.port + 1}")'
            )
    return None


def is_new_data_dir(data_dir: str) -> bool:
    """True for a missing or empty data directory: the only kind that gets demo data."""
    path = Path(data_dir)
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def note_demo_data(data_dir: str) -> None:
    """Say in the data directory itself what `make run` added, and how to avoid it."""
    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / DEMO_NOTE).write_text(
        f"This data directory was new on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, so\n"
        "`make run` (python -m launcher) added demo data once:\n"
        "- a few synthetic `main` pings (Firefox 153.7.0 esr, build ID `demo`) and, when the\n"
        "  shared fixtures are present, the real Firefox 23 idle-daily submission;\n"
        "- the example job `published-summary` (owner demo@localhost) and its first run.\n"
        "Later starts on this directory add nothing. To start without demo data, use a new\n"
        'directory with `make run ARGS="--no-demo"` (python -m launcher --no-demo).\n'
    )


def wait_until_listening(service: Service, host: str, timeout: float, stopping) -> bool:
    """Wait for the service's port; give up early if it exits or Ctrl-C arrives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping():
        if service.process is not None and service.process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, service.port), 0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def start(services: Sequence[Service], env: dict[str, str]) -> None:
    for service in services:
        log.info("starting %s: %s", service.name, " ".join(service.argv[1:]))
        service.process = subprocess.Popen(service.argv, env=env)


def stop(services: Sequence[Service]) -> int:
    """SIGTERM everything (each flushes its own work), then SIGKILL what lingers."""
    worst = 0
    for service in services:
        if service.process and service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for service in services:
        if not service.process:
            continue
        try:
            code = service.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning(
                "%s did not stop within %.0fs; killing it", service.name, STOP_GRACE_SECONDS
            )
            service.process.kill()
            code = service.process.wait()
        if code not in (0, -signal.SIGTERM):
            log.warning("%s exited with %s", service.name, code)
            worst = 1 if service.essential else worst
    return worst


def port_number(text: str) -> int:
    """argparse type: a TCP port, so 99999 is a usage error rather than a bind traceback."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1 to 65535)")
    return port


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    settings = load_settings()
    parser = argparse.ArgumentParser(
        prog="python -m launcher",
        description="Start ingest, convert, scheduler and dashboard together on one machine.",
        epilog='With make, pass flags in ARGS: make run ARGS="--no-demo --ingest-port 8081"\n\n'
        "Effective settings (TELEMETRY_* environment or TELEMETRY_CONFIG file):\n"
        + settings.describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address every server binds to (default %(default)s)"
    )
    parser.add_argument(
        "--ingest-port",
        type=port_number,
        default=8080,
        help="ingest HTTP port (default %(default)s)",
    )
    parser.add_argument(
        "--dashboard-port",
        type=port_number,
        default=5000,
        help="dashboard HTTP port (default %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="convert worker processes (default %(default)s)"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=settings.metrics_port,
        metavar="PORT",
        help="serve convert's metrics from PORT (one port per worker), then the scheduler's and "
        "the health watcher's on the next two (default: %(default)s, TELEMETRY_METRICS_PORT; "
        "0: off; ingest and the dashboard serve /metrics on their own ports)",
    )
    parser.add_argument(
        "--no-demo",
        action="store_true",
        help="do not add demo data (a few submissions and the example job) even to a new "
        "data directory; a data directory in use never gets any",
    )
    add_common_arguments(parser)  # --log-level and --log-format apply to every service started
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    apply_config_flag(argv)  # the services started inherit it as TELEMETRY_CONFIG
    args = parse_args(argv)
    settings = load_settings()
    setup_logging_from_args("runall", args, settings)
    env = dict(os.environ, TELEMETRY_DATA_DIR=settings.data_dir, PYTHONUNBUFFERED="1")
    if args.log_level:
        env["TELEMETRY_LOG_LEVEL"] = args.log_level
    if args.log_format:
        env["TELEMETRY_LOG_FORMAT"] = args.log_format
    # On one machine, show submissions within seconds rather than after a minute's batch.
    env.setdefault("TELEMETRY_SPOOL_MAX_AGE_SECONDS", "5")
    services = build_services(args)
    stopping = False

    def request_stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    problem = check_ports(services, args.host)
    if problem:
        print(problem, file=sys.stderr, flush=True)
        return 2
    add_demo = not args.no_demo and is_new_data_dir(settings.data_dir)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    start(services, env)
    for service in services:
        if service.port and not wait_until_listening(service, args.host, 60, lambda: stopping):
            if not stopping:
                log.error("%s did not open port %s; stopping", service.name, service.port)
            return stop(services) or (0 if stopping else 1)
    print(
        "\ntelemetry-pipeline is running (Ctrl-C stops it). Data: " + settings.data_dir, flush=True
    )
    for service in services:
        if service.url:
            print(f"  {service.name:<10} {service.url}", flush=True)
    if not add_demo:
        log.info(
            "no demo data: %s",
            "--no-demo" if args.no_demo else f"the data directory {settings.data_dir} is in use",
        )
    else:
        from launcher.demo import send_demo_submissions

        note_demo_data(settings.data_dir)
        log.info(
            "new data directory: adding demo data once (listed in %s; --no-demo skips it)",
            Path(settings.data_dir) / DEMO_NOTE,
        )
        send_demo_submissions(settings, f"http://{args.host}:{args.ingest_port}")
        # A one-shot helper, not a service: its exit is no reason to stop the pipeline.
        demo_job = Service(
            "demo-job", [sys.executable, "-m", "scheduler.examples.demo_job"], essential=False
        )
        start([demo_job], env)
        services.append(demo_job)
    exit_code = 0
    while not stopping:
        for service in services:
            if not service.essential:
                continue
            if service.process and service.process.poll() is not None:
                log.error(
                    "%s exited unexpectedly with %s; stopping the pipeline",
                    service.name,
                    service.process.returncode,
                )
                stopping, exit_code = True, 1
        time.sleep(0.5)
    log.info("stopping")
    return stop(services) or exit_code


if __name__ == "__main__":
    sys.exit(main())
