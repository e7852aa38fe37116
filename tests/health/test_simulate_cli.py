"""`python -m health.simulate` as a person runs it: a subprocess writing to a SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from health.alerts import Alert
from pipeline.db import make_engine
from pipeline.stats import HourlyStat

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, env_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env["TELEMETRY_DATA_DIR"] = str(env_dir)
    return subprocess.run(
        [sys.executable, "-m", "health.simulate", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _count(url: str, model) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(model)).scalar_one()
    finally:
        engine.dispose()


def _total(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.sum(HourlyStat.count))).scalar_one()
    finally:
        engine.dispose()


def test_outage_scenario_prints_truth_and_stores_matching_alerts(tmp_path):
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    # under 60 days the outages start after two weeks of history; 23 days hold the six-day
    # beta stop but not the later outages
    done = _run(
        "--days",
        "23",
        "--seed",
        "5",
        "--end",
        "2026-11-23T18:00",
        "--database-url",
        url,
        env_dir=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "injected incidents: 1" in done.stdout
    assert "beta stops sending for six days" in done.stdout
    assert "detected alerts: 1" in done.stdout
    engine = make_engine(url)
    with engine.connect() as conn:
        [(kind, subject, notified)] = conn.execute(
            select(Alert.kind, Alert.subject, Alert.notified_open)
        ).all()
    engine.dispose()
    assert (kind, subject, notified) == ("drop", "beta", True)  # history: no mail owed later


def test_clean_scenario_refuses_to_double_counts_unless_replacing(tmp_path):
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    args = (
        "--days",
        "3",
        "--scenario",
        "clean",
        "--seed",
        "2",
        "--end",
        "2026-06-01T00:00",
        "--database-url",
        url,
    )
    first = _run(*args, env_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "injected incidents: 0" in first.stdout and "detected alerts: 0" in first.stdout
    rows, total = _count(url, HourlyStat), _total(url)
    assert rows > 3 * 24 * 4 and total > 3 * 24 * 4000  # both sources, every channel, every hour

    again = _run(*args, env_dir=tmp_path)
    assert again.returncode == 2
    assert "--replace" in again.stderr
    assert _total(url) == total

    replaced = _run(*args, "--replace", env_dir=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert _total(url) == total  # same seed, same traffic, not doubled


def test_default_database_is_the_configured_one(tmp_path):
    done = _run("--days", "1", "--scenario", "clean", "--no-detect", env_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _count(f"sqlite:///{tmp_path / 'app.db'}", HourlyStat) > 0
    assert "detected alerts" not in done.stdout


def test_help_explains_flags_and_shows_effective_defaults(tmp_path):
    done = _run("--help", env_dir=tmp_path)
    assert done.returncode == 0
    for flag in ("--days", "--seed", "--database-url", "--scenario", "--replace", "--end"):
        assert flag in done.stdout
    assert f"sqlite:///{tmp_path}/app.db" in done.stdout.replace("\n", "").replace(" ", "")


def test_bad_arguments_exit_2_with_a_message(tmp_path):
    bad_url = _run("--database-url", "mysql://nowhere/db", env_dir=tmp_path)
    assert bad_url.returncode == 2 and "unsupported database URL" in bad_url.stderr
    bad_days = _run("--days", "0", env_dir=tmp_path)
    assert bad_days.returncode == 2 and "--days" in bad_days.stderr
