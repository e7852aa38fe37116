"""Synthetic published data in the real layout, for tests, benchmarks and trying examples.

Records look like converted v1 payloads (`{"ver": 2, "info": {...}, "histograms": {NAME:
compact array}, "simpleMeasurements": {...}}`), about 10 KB each like real ones, and are
written through `pipeline.layout.published_key` as lz4 frame files of `docId<TAB>json` lines.
Building every histogram from scratch is slow, so bodies come from a pool of pre-built ones
and only the ids and info fields vary per record.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable, Mapping

import lz4.frame

from pipeline.layout import published_key
from pipeline.stores.base import BlobStore

OS_VALUES = ("WINNT", "Darwin", "Linux", "Android")
CHANNELS = ("release", "beta", "aurora", "nightly")
VERSIONS = ("22.0", "23.0.1", "24.0")
HISTOGRAM_NAMES = [
    f"{prefix}_{i}"
    for prefix in ("GC", "CYCLE_COLLECTOR", "HTTP", "DNS", "TELEMETRY")
    for i in range(24)
]
HISTOGRAM_NAMES[0] = "GC_MS"


def compact_histogram(rng: random.Random, buckets: int) -> list[int]:
    counts = [rng.randrange(0, 50) if rng.random() < 0.4 else 0 for _ in range(buckets)]
    total = sum(counts)
    return counts + [total * 7, -1 if rng.random() < 0.1 else total * 3, -1, total * 11, 0]


def make_body(rng: random.Random, dims: Mapping[str, str], os_name: str) -> dict:
    histograms = {}
    for name in HISTOGRAM_NAMES:
        buckets = 20 if name == "GC_MS" else rng.choice((3, 10, 20, 50))
        histograms[name] = compact_histogram(rng, buckets)
    return {
        "ver": 2,
        "info": {
            "reason": dims["reason"],
            "OS": os_name,
            "appID": "{ec8030f7-c20a-464f-9b0e-13a3a9e97384}",
            "appVersion": dims["appVersion"],
            "appName": dims["appName"],
            "appBuildID": dims["appBuildID"],
            "appUpdateChannel": dims["appUpdateChannel"],
            "platformBuildID": dims["appBuildID"],
            "locale": "en-US",
            "cpucount": rng.choice((1, 2, 4, 8)),
            "memsize": rng.choice((2048, 4096, 8192)),
        },
        "simpleMeasurements": {
            "uptime": rng.randrange(1, 10000),
            "main": rng.randrange(50, 500),
            "firstPaint": rng.randrange(500, 5000),
            "sessionRestored": rng.randrange(500, 8000),
        },
        "histograms": histograms,
    }


def encode_lines(records: Iterable[tuple[str, str | bytes]]) -> bytes:
    """`docId<TAB>json` lines compressed as one lz4 frame."""
    lines = []
    for doc_id, body in records:
        data = body if isinstance(body, bytes) else body.encode()
        lines.append(doc_id.encode() + b"\t" + data + b"\n")
    return lz4.frame.compress(b"".join(lines))


def write_partition(
    store: BlobStore,
    dims: Mapping[str, str],
    object_id: str,
    records: Iterable[tuple[str, str | bytes]],
) -> str:
    """Publish `records` as one object of the partition `dims`; return its key."""
    key = published_key(dims, object_id)
    store.put(key, encode_lines(records))
    return key


def partition_dims(index: int) -> dict[str, str]:
    """A deterministic spread of partitions over reasons, channels, versions and dates."""
    return {
        "reason": ("saved-session", "idle-daily")[index % 2],
        "appName": ("Firefox", "Fennec")[index // 2 % 2],
        "appUpdateChannel": CHANNELS[index // 4 % len(CHANNELS)],
        "appVersion": VERSIONS[index // 16 % len(VERSIONS)],
        "appBuildID": f"2013{index % 7 + 10:02d}01000000",
        "submission_date": f"201308{index % 3 + 10:02d}",
    }


def generate(
    store: BlobStore,
    target_bytes: int,
    *,
    files: int = 48,
    seed: int = 1,
    pool: int = 64,
    records_per_object: int = 2000,
) -> dict[str, int]:
    """Publish about `target_bytes` of uncompressed records across `files` partitions.

    Returns {key: records}. Each partition gets objects of at most `records_per_object`
    records, so big targets produce several objects per partition as the converter would.
    """
    rng = random.Random(seed)
    bodies: dict[str, list[bytes]] = {}
    written: dict[str, int] = {}
    produced = 0
    index = 0
    sequence = 0
    while produced < target_bytes:
        dims = partition_dims(index % files)
        template = bodies.setdefault(dims["appUpdateChannel"] + dims["appVersion"], [])
        batch = []
        for _ in range(records_per_object):
            if len(template) < pool:
                body = make_body(rng, dims, rng.choice(OS_VALUES))
                template.append(json.dumps(body, separators=(",", ":")).encode())
            data = template[rng.randrange(len(template))]
            doc_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            batch.append((doc_id, data))
            produced += len(doc_id) + len(data) + 2
            if produced >= target_bytes:
                break
        key = write_partition(store, dims, f"batch{sequence:05d}", batch)
        written[key] = len(batch)
        sequence += 1
        index += 1
    return written


def small_dataset(
    store: BlobStore, *, partitions: int = 12, records: int = 40, seed: int = 7
) -> dict[str, list[tuple[str, dict]]]:
    """A quick data set for tests: small bodies, several objects per partition.

    Returns {key: [(docId, body), ...]} so a test can compute the expected answer itself.
    """
    rng = random.Random(seed)
    written: dict[str, list[tuple[str, dict]]] = {}
    for index in range(partitions):
        dims = partition_dims(index)
        for part in range(2):
            batch = []
            for _ in range(rng.randrange(records // 2, records + 1)):
                body = {
                    "ver": 2,
                    "info": {
                        "OS": rng.choice(OS_VALUES),
                        "appUpdateChannel": dims["appUpdateChannel"],
                    },
                    "histograms": {"GC_MS": compact_histogram(rng, 6)},
                    "simpleMeasurements": {"uptime": rng.randrange(1000)},
                }
                batch.append((str(uuid.UUID(int=rng.getrandbits(128), version=4)), body))
            key = write_partition(
                store, dims, f"obj{index}x{part}", ((d, json.dumps(b)) for d, b in batch)
            )
            written[key] = batch
    return written
