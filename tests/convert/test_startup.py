"""Convert's process life: start-up during an outage, and workers that outlive their parent.

* started while its Redis queue is down, convert waits and carries on once Redis is up (it
  used to exit 2, "configuration error"); a wrong setting is still exit 2 at once;
* SIGKILL of `python -m convert --workers 2` stops its worker processes (they used to go on
  claiming batches with nobody to stop them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import ConfigError, ServiceUnreachable
from pipeline.stores import open_store
from tests.support.convert import REPO, run_convert
from tests.support.servers import RedisServer, free_port
from tests.support.waiting import wait_for


def _convert(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    full = dict(os.environ, **env)
    return subprocess.Popen(
        [sys.executable, "-m", "convert", *args],
        cwd=REPO,
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),  # noqa: SIM115 - the child owns it
    )


def _wait_for_text(log: Path, text: str, process: subprocess.Popen, count: int = 1) -> None:
    """Wait until the child's log shows `text` (`count` times); fail fast if it exits."""

    def seen() -> bool:
        if process.poll() is not None:
            pytest.fail(f"convert exited {process.returncode}: {log.read_text()[-2000:]}")
        return log.read_text(errors="replace").count(text) >= count

    wait_for(seen, 60, f"{text!r} in the log")


def test_convert_started_during_a_queue_outage_waits_for_it(data_dir, tmp_path):
    redis = RedisServer()  # its port is chosen, the server not started yet
    log = tmp_path / "convert.log"
    process = _convert({"TELEMETRY_QUEUE_URL": redis.url}, log, "--drain", "--drain-wait", "0")
    try:
        _wait_for_text(log, "waiting for the stores and the queue", process)
        redis.start()
        assert process.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        redis.stop()
    assert "cannot reach Redis" in log.read_text()


def test_a_wrong_setting_is_still_a_configuration_error_at_once(data_dir):
    result = run_convert({"TELEMETRY_QUEUE_URL": "nosuch://queue"}, "--drain")
    assert result.returncode == 2 and "TELEMETRY_QUEUE_URL" in result.stderr


def test_an_unreachable_s3_endpoint_is_an_outage_and_a_missing_bucket_a_setting(moto):
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnreachable):
        open_store("s3://b/p", setting="TELEMETRY_INCOMING_URL", endpoint_url=closed)
    with pytest.raises(ConfigError) as missing:
        open_store("s3://no-such-bucket/p", setting="X", endpoint_url=moto.endpoint)
    assert not isinstance(missing.value, ServiceUnreachable)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited; only its reaping is left


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_workers_stop_when_their_parent_is_killed(data_dir, tmp_path):
    log = tmp_path / "convert.log"
    process = _convert({}, log, "--workers", "2", "--poll-seconds", "0.2")
    workers: list[int] = []
    try:
        _wait_for_text(log, "worker ready", process, count=2)
        workers = _children(process.pid)
        assert len(workers) == 2
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        wait_for(lambda: not any(_running(pid) for pid in workers), 30, "the workers to stop")
        assert not [pid for pid in workers if _running(pid)], log.read_text()[-2000:]
    finally:
        for pid in workers:  # on failure, do not leave them claiming
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
            process.wait()
