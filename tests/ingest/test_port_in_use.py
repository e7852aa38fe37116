"""`python -m ingest` on a port another program holds: one line naming --port, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def test_a_taken_port_is_one_line_and_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env["TELEMETRY_DATA_DIR"] = str(tmp_path / "var")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "ingest", "--port", str(port), "--no-hourly-counts"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert (
        f"ingest: 127.0.0.1:{port} is already in use by another program; "
        "choose another port with --port"
    ) in done.stderr.splitlines()
