"""deploy/systemd/: every unit passes `systemd-analyze verify` without a warning, is
hardened, and starts a command whose flags the service accepts."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
INSTALLED_PYTHON = "/opt/telemetry-pipeline/venv/bin/python"
SERVICES = {
    "telemetry-ingest.service": "ingest",
    "telemetry-convert@.service": "convert",
    "telemetry-scheduler.service": "scheduler",
    "telemetry-health.service": "health",
    "telemetry-dashboard.service": "dashboard",
}
HARDENING = ("User=telemetry", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes")


def unit_copies(tmp_path: Path) -> list[Path]:
    """The units with this checkout's Python (verify checks that ExecStart exists); the
    convert template as one instance, as `systemctl enable telemetry-convert@9101` makes it."""
    paths = []
    for name in SERVICES:
        text = (UNITS / name).read_text().replace(INSTALLED_PYTHON, sys.executable)
        target = tmp_path / name.replace("@.", "@9101.")
        target.write_text(text)
        paths.append(target)
    return paths


def test_every_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (make setup installs the systemd package)")
    units = unit_copies(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # unknown keys and bad values are only warnings


@pytest.mark.parametrize("name", SERVICES)
def test_each_unit_is_hardened_and_runs_its_service_with_valid_flags(name, data_dir):
    text = (UNITS / name).read_text()
    for line in HARDENING:
        assert line in text.splitlines(), f"{name}: no {line}"
    assert "EnvironmentFile=/etc/telemetry-pipeline/env" in text
    (exec_start,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start.removeprefix("ExecStart=").replace("%i", "9101"))
    assert argv[:3] == [INSTALLED_PYTHON, "-m", SERVICES[name]]
    # the same command with --help: argparse refuses any flag the service does not take
    result = subprocess.run(
        [sys.executable, *argv[1:], "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_the_environment_example_names_only_known_settings():
    from dashboard.config import DashboardConfig
    from pipeline.config import Settings
    from scheduler.config import SchedulerConfig

    known = {
        f"{prefix}{field.upper()}"
        for prefix, section in (
            ("TELEMETRY_", Settings),
            ("TELEMETRY_SCHEDULER_", SchedulerConfig),
            ("TELEMETRY_DASHBOARD_", DashboardConfig),
        )
        for field in section.__dataclass_fields__
    }
    lines = (UNITS / "telemetry-pipeline.env.example").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in lines if line.startswith("TELEMETRY_")}
    assert names and names <= known, names - known
