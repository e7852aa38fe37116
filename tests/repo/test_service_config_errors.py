"""Every service refuses a bad configuration at start-up with one line naming the setting.

Each service is started as a person starts it (`python -m <service>`) with one setting that
is unusable for that service; it must exit non-zero, print no traceback, and name the setting
on exactly one line of its output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE_POSTGRES = "postgresql://nobody:pw-not-shown@127.0.0.1:1/telemetry"

# (service command, setting, value); "{blocker}" is a regular file, so nothing fits under it.
CASES = [
    (["ingest"], "TELEMETRY_QUEUE_URL", "kafka://x"),
    (["ingest"], "TELEMETRY_INCOMING_URL", "ftp://host/incoming"),
    (["ingest"], "TELEMETRY_MAX_BODY_BYTES", "huge"),
    (["convert", "--drain"], "TELEMETRY_QUEUE_URL", "kafka://x"),
    (["convert", "--drain"], "TELEMETRY_PUBLISHED_URL", "file://{blocker}/published"),
    (["convert", "--drain"], "TELEMETRY_DATABASE_URL", UNREACHABLE_POSTGRES),
    (["convert", "--drain"], "TELEMETRY_MAX_BODY_BYTES", "huge"),
    (["scheduler"], "TELEMETRY_DATABASE_URL", "sqlite:///{blocker}/app.db"),
    (["scheduler"], "TELEMETRY_DATABASE_URL", UNREACHABLE_POSTGRES),
    (["scheduler"], "TELEMETRY_MAX_BODY_BYTES", "huge"),
    (["dashboard"], "TELEMETRY_RUNNER", "bogus"),
    (["dashboard"], "TELEMETRY_DATABASE_URL", "sqlite:///{blocker}/app.db"),
    (["dashboard"], "TELEMETRY_DATABASE_URL", UNREACHABLE_POSTGRES),
    (["dashboard"], "TELEMETRY_MAX_BODY_BYTES", "huge"),
]


def start(tmp_path: Path, command: list[str], setting: str, value: str):
    blocker = tmp_path / "plain-file"
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env["TELEMETRY_DATA_DIR"] = str(tmp_path / "var")
    env[setting] = value.format(blocker=blocker)
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", *command],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,  # a service that starts despite the bad setting would run until killed
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("command", "setting", "value"),
    CASES,
    ids=[f"{' '.join(c)}-{s.removeprefix('TELEMETRY_')}-{v.split(':')[0]}" for c, s, v in CASES],
)
def test_service_refuses_a_bad_setting_in_one_line(tmp_path, command, setting, value):
    result = start(tmp_path, command, setting, value)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    naming = [line for line in output.splitlines() if setting in line]
    assert len(naming) == 1, output
    assert "pw-not-shown" not in output  # a URL's password is not echoed
