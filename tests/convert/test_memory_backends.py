"""convert on `memory://` queue and stores: it uses only the queue and store contracts.

No server, file store or queue file: the worker converts a batch, and a draining worker
leaves a failed batch's delayed retry without waiting a lease for it.
"""

from __future__ import annotations

import json
import uuid

import pytest

from convert.worker import EXIT_WORK_LEFT, ConvertWorker, WorkerOptions
from pipeline.config import load_settings
from pipeline.errors import StoreError
from tests.support.convert import gz, make_batch, stub_tools, telemetry_path, v1_payload


@pytest.fixture
def memory_settings(data_dir):
    run = uuid.uuid4().hex[:8]
    return load_settings(
        {
            "TELEMETRY_DATA_DIR": str(data_dir),
            "TELEMETRY_QUEUE_URL": f"memory://queue-{run}",
            "TELEMETRY_INCOMING_URL": f"memory://incoming-{run}",
            "TELEMETRY_PUBLISHED_URL": f"memory://published-{run}",
        }
    )


def submit(worker: ConvertWorker, key: str) -> None:
    data = make_batch([(telemetry_path(), {"Content-Encoding": "gzip"}, gz(v1_payload()))])
    worker.incoming.put(key, data)
    worker.queue.send(json.dumps({"key": key, "records": 1, "bytes": len(data)}))


def test_a_drain_converts_a_batch_with_memory_backends_only(memory_settings):
    worker = ConvertWorker(memory_settings, WorkerOptions(drain=True), stub_tools())
    submit(worker, "one.tpr")
    assert worker.run() == 0
    assert worker.queue.census().total == 0
    assert not worker.incoming.exists("one.tpr")
    assert [info.key for info in worker.published.list() if not info.key.startswith("errors/")]


def test_a_drain_leaves_a_delayed_retry_without_waiting_a_lease(memory_settings, caplog):
    options = WorkerOptions(drain=True, retry_delay=3600)
    worker = ConvertWorker(memory_settings, options, stub_tools())

    def failing_put_file(key, path):
        raise StoreError("published store is down")

    worker.published.put_file = failing_put_file
    submit(worker, "fails.tpr")
    with caplog.at_level("INFO"):
        assert worker.run() == EXIT_WORK_LEFT
    assert "not claimable" not in caplog.text  # no wait for the 300 s lease
    census = worker.queue.census()
    assert (census.delayed, census.total) == (1, 1)
    assert worker.incoming.exists("fails.tpr")
