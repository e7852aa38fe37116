"""`--metrics-port` of convert, the scheduler and the health watcher, as started by their
units: /metrics, /__heartbeat__ and /__lbheartbeat__ answer on it; convert's workers each on
their own port."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import pytest

from tests.support.metrics import get_json, scrape
from tests.support.servers import free_ports, wait_for_port


@pytest.mark.parametrize(
    "argv, metric",
    [
        (["scheduler"], "scheduler_runs"),
        (["health"], "health_open_alerts"),
        (["convert", "--workers", "2"], "convert_queue_depth"),
    ],
)
def test_service_serves_metrics_and_heartbeats_on_its_metrics_port(data_dir, argv, metric):
    count = 2 if "--workers" in argv else 1
    port = free_ports(count)
    ports = list(range(port, port + count))
    process = subprocess.Popen(
        [sys.executable, "-m", *argv, "--metrics-port", str(port)],
        env={**os.environ, "TELEMETRY_HEALTH_INTERVAL_SECONDS": "3600"},
    )
    try:
        for each in ports:  # convert --workers 2: worker i on PORT+i
            wait_for_port(each, timeout=60)
            assert get_json(f"http://127.0.0.1:{each}/__heartbeat__")[0] == 200
            with urllib.request.urlopen(f"http://127.0.0.1:{each}/__lbheartbeat__") as response:
                assert response.status == 200
            samples = scrape(f"http://127.0.0.1:{each}/metrics")
            assert any(name == metric for name, _labels in samples)
    finally:
        process.terminate()
        assert process.wait(60) == 0


@pytest.mark.parametrize("module", ["scheduler", "health", "convert"])
def test_a_metrics_port_in_use_is_one_line_naming_the_setting(data_dir, module):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", module, "--metrics-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert (
        f"TELEMETRY_METRICS_PORT: cannot listen on 127.0.0.1:{port} for metrics: "
        "Address already in use"
    ) in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
