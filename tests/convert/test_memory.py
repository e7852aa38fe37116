"""Bounded memory per batch: the worker converts a batch of maximal records (each ~8 KB of
gzip decompressing to ~8 MiB) under an address-space limit that the whole batch's converted
output would not fit in. The old BatchProcessor held every converted line until the end of
the batch (MemoryError here; hundreds of MB to tens of GB in production)."""

from __future__ import annotations

import json
import resource

import lz4.frame

from pipeline.config import load_settings
from pipeline.queues import open_work_queue
from pipeline.stores import open_store
from tests.support.convert import make_batch, maximal_record, run_convert

RECORDS = 40  # ~335 MB of converted lines in all
ADDRESS_SPACE = 450 * 1024 * 1024  # a worker maps ~300 MB before it converts anything


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def test_batch_of_maximal_records_converts_under_an_address_space_limit(data_dir):
    settings = load_settings()
    records = [maximal_record(settings.max_decompressed_bytes) for _ in range(RECORDS)]
    incoming = open_store(settings.incoming_url)
    incoming.put("max/batch.tpr", make_batch(records))
    queue = open_work_queue(settings)
    queue.send(json.dumps({"key": "max/batch.tpr", "records": RECORDS, "bytes": 0}))
    queue.close()

    # glibc gives each thread a 64 MiB malloc arena of address space; two keep it predictable
    env = {"MALLOC_ARENA_MAX": "2"}
    result = run_convert(env, "--drain", preexec_fn=_limit_address_space)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MemoryError" not in result.stderr
    published = open_store(settings.published_url)
    lines = [
        line
        for info in published.list()
        for line in lz4.frame.decompress(published.get(info.key)).splitlines()
    ]
    assert len(lines) == RECORDS
    assert not [info.key for info in published.list("errors/")]
    assert not incoming.exists("max/batch.tpr")
