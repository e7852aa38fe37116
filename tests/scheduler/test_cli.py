"""`python -m scheduler` end to end, by subprocess: add, list, run-now --wait, history, the service."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.db import init_db, make_engine, session_factory
from scheduler.jobs import service_alive
from tests.support.scheduler import add_example, cli
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_add_list_run_now_wait_and_history(example_tarball, data_dir):
    added = add_example(example_tarball)
    assert added.returncode == 0, added.stderr
    assert "job published-summary created" in added.stdout

    listed = cli("list")
    assert listed.returncode == 0
    assert "published-summary" in listed.stdout and "weekly mon 06:00" in listed.stdout

    ran = cli("run-now", "published-summary", "--wait")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "executing the run in this process" in ran.stdout
    assert "published: published-summary/data/summary.json" in ran.stdout
    summary = json.loads(
        (data_dir / "public" / "published-summary" / "data" / "summary.json").read_text()
    )
    assert summary["job"] == "published-summary" and summary["objects"] == 0
    assert (data_dir / "public" / "published-summary" / "logs" / "1.log").exists()

    history = cli("history", "published-summary")
    assert history.returncode == 0
    assert "manual" in history.stdout and "succeeded" in history.stdout


def test_add_reports_each_invalid_field(example_tarball):
    result = cli(
        "add",
        "--name",
        "bad name",
        "--tarball",
        str(example_tarball),
        "--command",
        "true",
        "--frequency",
        "monthly",
        "--hour",
        "25",
        "--owner",
        "not-an-email",
    )
    assert result.returncode == 2
    for flag in ("--name:", "--hour:", "--owner:", "--day-of-month:"):
        assert flag in result.stderr


def test_unknown_job_is_a_clear_error(data_dir):
    result = cli("run-now", "nope")
    assert result.returncode == 2 and "no job named 'nope'" in result.stderr


@pytest.mark.parametrize(
    "command", [[], ["add"], ["list"], ["run-now"], ["history"], ["cancel"], ["remove"]]
)
def test_every_command_has_help(command, data_dir):
    result = cli(*command, "--help")
    assert result.returncode == 0 and "usage: python -m scheduler" in result.stdout


def test_service_executes_run_now_and_stops_cleanly_on_sigterm(example_tarball, data_dir, settings):
    assert add_example(example_tarball).returncode == 0
    service = subprocess.Popen(
        [sys.executable, "-m", "scheduler", "--sync-seconds", "0.5"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        engine = make_engine(settings.database_url)
        init_db(engine)
        Session = session_factory(engine)

        def alive() -> bool:
            with Session() as session:
                if service_alive(session):
                    return True
            assert service.poll() is None, service.stdout.read()
            return False

        wait_for(alive, 60, "the service's heartbeat")
        ran = cli("run-now", "published-summary", "--wait")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "executing the run in this process" not in ran.stdout
        assert (data_dir / "public" / "published-summary" / "data" / "summary.json").exists()
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            code = service.wait(60)
        except subprocess.TimeoutExpired:
            service.kill()
            raise
    output = service.stdout.read()
    assert code == 0, output
    assert "scheduler service stopped" in output


def open_db(settings):
    engine = make_engine(settings.database_url)
    init_db(engine)
    return engine, session_factory(engine)


def queue_run(name: str) -> int:
    """`run-now NAME` without a service: the run stays queued (state scheduled); its id."""
    queued = cli("run-now", name)
    assert queued.returncode == 0, queued.stderr
    assert "no scheduler service is running" in queued.stderr
    # "run 3 of job NAME queued"
    words = queued.stdout.split()
    assert words[0] == "run" and words[2:5] == ["of", "job", name], queued.stdout
    return int(words[1])


def assert_one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [message]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cancel_a_queued_run_cancels_it_and_leaves_others_alone(example_tarball, settings):
    from scheduler.models import Run

    assert add_example(example_tarball).returncode == 0
    first, second = queue_run("published-summary"), queue_run("published-summary")

    cancelled = cli("cancel", str(first))
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"run {first}: cancelled"

    engine, Session = open_db(settings)
    try:
        with Session() as session:
            run = session.get(Run, first)
            assert run.state == "cancelled" and run.cancel_requested
            assert run.reason == "cancelled before it started" and run.finished_at is not None
            other = session.get(Run, second)
            assert other.state == "scheduled" and not other.cancel_requested
    finally:
        engine.dispose()
    history = cli("history", "published-summary")
    [line] = [row for row in history.stdout.splitlines() if row.split()[0] == str(first)]
    assert "cancelled" in line and "cancelled before it started" in line

    again = cli("cancel", str(first))  # a finished run stays as it is
    assert again.returncode == 0 and again.stdout.strip() == f"run {first}: cancelled"


def test_cancel_a_running_run_asks_the_service_to_stop_it(example_tarball, settings):
    from scheduler.models import Run

    assert add_example(example_tarball).returncode == 0
    run_id = queue_run("published-summary")
    engine, Session = open_db(settings)
    try:
        with Session() as session:  # as if a service had claimed it
            session.get(Run, run_id).state = "running"
            session.commit()
        cancelled = cli("cancel", str(run_id))
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.strip() == (
            f"run {run_id}: running (cancel requested; the service stops it shortly)"
        )
        with Session() as session:
            run = session.get(Run, run_id)
            assert run.state == "running" and run.cancel_requested and run.finished_at is None
    finally:
        engine.dispose()


def test_cancel_an_unknown_run_is_a_one_line_error(data_dir):
    assert_one_line_error(cli("cancel", "4242"), "error: no run 4242")


def test_remove_deletes_the_job_and_its_runs_but_not_published_output(
    example_tarball, data_dir, settings
):
    from sqlalchemy import select

    from scheduler.models import Job, Run

    assert add_example(example_tarball).returncode == 0
    assert add_example(example_tarball, name="other-job").returncode == 0
    ran = cli("run-now", "published-summary", "--wait")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    queue_run("published-summary")
    kept_run = queue_run("other-job")
    summary = data_dir / "public" / "published-summary" / "data" / "summary.json"
    assert summary.exists()

    removed = cli("remove", "published-summary")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == "job published-summary deleted"

    engine, Session = open_db(settings)
    try:
        with Session() as session:
            assert session.scalars(select(Job.name)).all() == ["other-job"]
            runs = session.scalars(select(Run)).all()
            assert [(run.id, run.job.name) for run in runs] == [(kept_run, "other-job")]
    finally:
        engine.dispose()
    listed = cli("list")
    assert "published-summary" not in listed.stdout and "other-job" in listed.stdout
    assert_one_line_error(
        cli("history", "published-summary"),
        "error: no job named 'published-summary' (see `python -m scheduler list`)",
    )
    assert summary.exists()  # "published output stays in the public store"


def test_remove_an_unknown_job_is_a_one_line_error(data_dir):
    assert_one_line_error(
        cli("remove", "nope"), "error: no job named 'nope' (see `python -m scheduler list`)"
    )
