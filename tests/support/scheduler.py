"""Scheduler test helpers: jobs and run requests with real tarballs in the code store, an
in-process runner that records what it was asked, `python -m scheduler` as a person types it,
and the host processes a run left behind."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import select

from scheduler.jobs import create_job, store_tarball
from scheduler.models import Job, Run, RunState
from scheduler.runners.base import Runner, RunOutcome, RunRequest
from tests.support.tarballs import make_tarball

ROOT = Path(__file__).resolve().parents[2]


T0 = dt.datetime(2024, 5, 1, 12, 0)  # a firing of DAILY_12


class RecordingRunner(Runner):
    """In-process fake: records requests; blocks while `hold` is set (for overlap tests)."""

    name = "local"

    def __init__(self) -> None:
        self.requests = []
        self.hold = threading.Event()
        self.release = threading.Event()
        self.started = threading.Semaphore(0)

    def execute(self, request, on_started=None):
        self.requests.append(request)
        self.started.release()
        if self.hold.is_set():
            self.release.wait(60)
        return RunOutcome(RunState.succeeded, "ok", exit_code=0)


def add_job(
    Session,
    settings,
    name="demo",
    *,
    created=T0 - dt.timedelta(days=10),
    command="mkdir output",
    **fields,
) -> Job:
    key = store_tarball(settings, name, make_tarball({"README": "x\n"}))
    with Session() as session:
        job = create_job(
            session,
            name=name,
            owner=f"{name}@example.com",
            tarball_key=key,
            command=command,
            output_dir="output",
            frequency=fields.pop("frequency", "daily"),
            **fields,
        )
        job.created_at = created
        session.commit()
        return job


def request(
    settings, command: str, *, name="demo", run_id=1, timeout=30.0, output_dir="output", files=None
) -> RunRequest:
    key = store_tarball(
        settings, name, make_tarball(files or {"hello.sh": "echo hello from the tarball\n"})
    )
    return RunRequest(
        run_id=run_id,
        job_name=name,
        owner="o@example.com",
        tarball_key=key,
        command=command,
        output_dir=output_dir,
        timeout_seconds=timeout,
        timeout_minutes=1,
    )


def process_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in (
        "Z",
        "X",
    )  # zombies wait for a reaper, but are dead


def processes_running(marker: str) -> list[int]:
    """Host pids whose command line contains `marker` (the sandbox's pids are its own)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and not process_gone(int(entry)):
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker.encode() in cmdline and b"pytest" not in cmdline:
                found.append(int(entry))
    return found


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TELEMETRY_SCHEDULER_SYNC_SECONDS": "0.5"},
    )


def add_example(tarball: Path, name: str = "published-summary") -> subprocess.CompletedProcess:
    return cli(
        "add",
        "--name",
        name,
        "--tarball",
        str(tarball),
        "--command",
        "python summarise.py",
        "--output-dir",
        "output",
        "--frequency",
        "weekly",
        "--day-of-week",
        "mon",
        "--hour",
        "6",
        "--owner",
        "ana@example.com",
        "--timeout-minutes",
        "5",
    )


def runs_of(Session, job_id) -> list[Run]:
    """The runs of a job, oldest firing first."""
    with Session() as session:
        return list(
            session.scalars(
                select(Run).where(Run.job_id == job_id).order_by(Run.scheduled_for, Run.id)
            )
        )


def left_running(Session, job_id, scheduled_for, instance_id=None) -> int:
    """A run row marked running, as a service that died would leave it; returns its id."""
    with Session() as session:
        run = Run(
            job_id=job_id,
            scheduled_for=scheduled_for,
            state=RunState.running.value,
            started_at=scheduled_for,
            instance_id=instance_id,
        )
        session.add(run)
        session.commit()
        return run.id
