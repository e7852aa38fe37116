"""`python -m health --once`: the periodic evaluation that `make run` starts."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

from health.alerts import list_alerts
from health.simulate import generate, write
from pipeline.db import init_db, make_engine


def run_watcher(env_dir, *args: str) -> subprocess.CompletedProcess:
    env = {"TELEMETRY_DATA_DIR": str(env_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "health", "--once", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_watcher_stores_alerts_for_an_injected_outage(tmp_path):
    data_dir = tmp_path / "var"
    engine = make_engine(f"sqlite:///{data_dir}/app.db")
    init_db(engine)
    now = dt.datetime.now(dt.UTC)
    simulation = generate(days=45, seed=1, scenario="outages", end=now)
    assert simulation.truth, "the simulator injected nothing to detect"
    write(engine, simulation)

    result = run_watcher(data_dir)

    assert result.returncode == 0, result.stderr
    alerts = list_alerts(engine, now.replace(tzinfo=None) - dt.timedelta(days=45))
    assert alerts, result.stderr
    assert "not mailed" in result.stderr


def test_watcher_on_clean_traffic_stores_no_alert(tmp_path):
    data_dir = tmp_path / "var"
    engine = make_engine(f"sqlite:///{data_dir}/app.db")
    init_db(engine)
    now = dt.datetime.now(dt.UTC)
    write(engine, generate(days=45, seed=2, scenario="clean", end=now))

    result = run_watcher(data_dir)

    assert result.returncode == 0, result.stderr
    assert list_alerts(engine, now.replace(tzinfo=None) - dt.timedelta(days=45)) == []


def test_watcher_with_unusable_database_fails_naming_the_setting(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env = {
        "TELEMETRY_DATA_DIR": str(tmp_path),
        "TELEMETRY_DATABASE_URL": f"sqlite:///{blocker}/sub/app.db",
    }
    result = subprocess.run(
        [sys.executable, "-m", "health", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "TELEMETRY_DATABASE_URL" in result.stderr
