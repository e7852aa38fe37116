"""The aggregates system job: created once under its fixed name, run by the scheduler like any
job (a real local run of `python -m aggregates job`, published to the public store, its run
recorded), and rerun for a date range on request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from pipeline.db import init_db, make_engine, session_factory
from pipeline.stores import open_store
from pipeline.system_jobs import AGGREGATES_COMMAND, AGGREGATES_JOB, AGGREGATES_OWNER
from scheduler.models import Job, Run
from scheduler.system_jobs import ensure_aggregates_job
from tests.support.aggregates_data import publish, seed

ROOT = Path(__file__).resolve().parents[2]
RECORD = {
    "v4": True, "date": "20261201", "channel": "release", "version": "24.0",
    "build_id": "20261101000000", "os": "Linux", "gc": [1] * 10, "flag": [0, 2, 0],
    "keyed": {"a": [0, 1, 0, 0, 0]}, "content_gc": [0] * 9 + [3], "uptime": 5,
}  # fmt: skip


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_ensure_creates_the_job_once(settings):
    engine = make_engine(settings.database_url)
    init_db(engine)
    sessions = session_factory(engine)
    job, created = ensure_aggregates_job(settings, sessions)
    assert created
    assert (job.name, job.owner, job.command) == (
        AGGREGATES_JOB,
        AGGREGATES_OWNER,
        AGGREGATES_COMMAND,
    )
    assert job.frequency == "daily" and job.enabled
    again, created = ensure_aggregates_job(settings, sessions)
    assert not created and again.id == job.id
    with sessions() as session:
        assert len(session.scalars(select(Job)).all()) == 1


def test_scheduled_run_publishes_the_aggregates_and_reruns_a_range(settings):
    seed(settings.histogram_cache)
    publish(open_store(settings.published_url), [RECORD, dict(RECORD, date="20261202")])
    assert "created" in cli("scheduler.system_jobs", "ensure").stdout

    done = cli("scheduler", "run-now", AGGREGATES_JOB, "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    public = open_store(settings.public_url)
    index = json.loads(public.get(f"{AGGREGATES_JOB}/data/index.json"))
    assert sorted(index["days"]) == ["20261201", "20261202"]
    assert public.exists(f"{AGGREGATES_JOB}/data/days/20261201.json.gz")
    first_stamp = index["days"]["20261201"]["computed_at"]

    # nothing new: the next run computes nothing and leaves the published days alone
    done = cli("scheduler", "run-now", AGGREGATES_JOB, "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    index = json.loads(public.get(f"{AGGREGATES_JOB}/data/index.json"))
    assert index["days"]["20261201"]["computed_at"] == first_stamp

    queued = cli("scheduler.system_jobs", "rerun", "--from", "2026-12-01", "--to", "2026-12-01")
    assert queued.returncode == 0 and "queued" in queued.stdout, queued.stderr
    done = cli("scheduler", "run-now", AGGREGATES_JOB, "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    index = json.loads(public.get(f"{AGGREGATES_JOB}/data/index.json"))
    assert index["days"]["20261201"]["computed_at"] > first_stamp  # redone
    assert index["days"]["20261202"]["computed_at"] == first_stamp  # outside the range

    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:
        states = [r.state for r in session.scalars(select(Run).order_by(Run.id))]
    assert states.count("succeeded") == 3  # every run recorded, like any job's


def test_rerun_refuses_a_reversed_range(settings):
    done = cli("scheduler.system_jobs", "rerun", "--from", "2026-12-05", "--to", "2026-12-01")
    assert done.returncode == 2
    assert "before it starts" in done.stderr
