"""SIGKILL under load: every acknowledged submission survives, exactly once, byte-identical."""

from __future__ import annotations

import asyncio
import collections
import gzip
import os
import random
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from pipeline.config import load_settings
from tests.support.incoming import incoming_records
from tests.support.servers import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]


class IngestProcess:
    """`python -m ingest` in a subprocess on a free port, stopped by pid."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"ingest-{self.port}.log"
        env = {**os.environ, "TELEMETRY_DATA_DIR": str(data_dir), **(extra_env or {})}
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ingest",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
                "--no-hourly-counts",
            ],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, timeout=60)
        except TimeoutError:
            self.process.kill()
            raise AssertionError(f"ingest did not start:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self._log.close()

    def terminate(self, timeout: float = 120) -> int:
        os.kill(self.process.pid, signal.SIGTERM)
        code = self.process.wait(timeout)
        self._log.close()
        return code


def stored(settings) -> collections.defaultdict[str, list[bytes]]:
    """docId -> bodies found in the incoming store (one entry per stored record)."""
    found: collections.defaultdict[str, list[bytes]] = collections.defaultdict(list)
    for record in incoming_records(settings):
        found[record.path.split("/")[3]].append(record.body)
    return found


def make_body(rng: random.Random, doc_id: str) -> tuple[bytes, dict[str, str]]:
    raw = (doc_id + "".join(rng.choice("abcdefgh ") for _ in range(rng.randint(50, 6000)))).encode()
    if rng.random() < 0.5:
        return gzip.compress(raw), {"Content-Encoding": "gzip"}
    return raw, {}


@pytest.mark.slow
async def test_sigkill_under_load_loses_no_acknowledged_submission(data_dir):
    # Small spool files so rotations and uploads happen while the load runs and the kill
    # can land in the middle of any of them.
    env = {"TELEMETRY_SPOOL_MAX_FILE_BYTES": str(150_000)}
    server = IngestProcess(data_dir, env)
    rng = random.Random(4)
    sent: dict[str, bytes] = {}
    acked: list[str] = []
    failed = 0
    total = 400
    kill_after = 150

    async def one(session: aiohttp.ClientSession, doc_id: str) -> None:
        nonlocal failed
        body, headers = make_body(rng, doc_id)
        sent[doc_id] = body
        path = f"/submit/telemetry/{doc_id}/main/Firefox/115.0/release/20230101000000?v=4"
        try:
            async with session.post(server.url + path, data=body, headers=headers) as response:
                await response.read()
                if response.status == 200:
                    acked.append(doc_id)
                    if len(acked) == kill_after:
                        server.kill()
        except (TimeoutError, aiohttp.ClientError):
            failed += 1

    connector = aiohttp.TCPConnector(limit=16)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        await asyncio.gather(*(one(session, str(uuid.uuid4())) for _ in range(total)))
    if server.process.poll() is None:  # the load finished before the kill point: still crash
        server.kill()
    assert len(acked) >= kill_after, server.log()
    assert failed > 0, "the kill landed after every request finished; nothing was tested"

    restarted = IngestProcess(data_dir)
    assert restarted.terminate() == 0, restarted.log()

    found = stored(load_settings())
    missing = [d for d in acked if d not in found]
    duplicated = [d for d, bodies in found.items() if len(bodies) > 1]
    altered = [d for d, bodies in found.items() if any(b != sent[d] for b in bodies)]
    assert not missing, f"{len(missing)} acknowledged submissions lost"
    assert not duplicated, f"{len(duplicated)} submissions stored more than once"
    assert not altered, f"{len(altered)} bodies differ from what was sent"
    assert set(found) <= set(sent)
    assert not list(Path(load_settings().spool_dir).glob("*.open"))
    assert not list(Path(load_settings().spool_dir).glob("*.batch"))
