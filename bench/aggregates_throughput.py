"""Aggregation throughput: the aggregates job over a day of generated published data.

    .venv/bin/python bench/aggregates_throughput.py [--size-mb 200] [--mappers 1]

Generates about --size-mb of uncompressed realistic converted records (about 10 KB each, 120
compact histograms of one revision's layouts and the simple measurements, bodies built with
`mapreduce.synthetic`) for one submission date in the published layout, with that revision's
Histograms.json in the cache, then runs the aggregates' MapReduce job (`aggregates.compute.run_job`,
the local engine) with --mappers mappers and prints `name: value unit` lines:

- aggregates_map_rate: MB/s of uncompressed records per mapper, wall time inside the mappers;
- aggregates_map_rate_cpu: the same per CPU second (the rate of a mapper with a core to itself);
- aggregates_job_rate: the whole job's MB/s (planning, shuffle and reduce included);
- aggregates_groups: the dimension groups the day produced.

Target (issue 16): >= 100 MB/s of uncompressed records per core.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from launcher.demo import seed_revision  # noqa: E402
from mapreduce import synthetic  # noqa: E402
from pipeline.stores import open_store  # noqa: E402

REVISION = "https://hg.mozilla.org/mozilla-central/rev/00000000be4c"
SIZES = (3, 10, 20, 50)


def bucket_count(index: int) -> int:
    return SIZES[index % len(SIZES)]


def histograms_json() -> dict:
    out = {}
    for index, name in enumerate(synthetic.HISTOGRAM_NAMES):
        n = bucket_count(index)
        definition = (
            {"kind": "boolean"}
            if n == 3
            else {"kind": "exponential", "high": 100000, "n_buckets": n}
        )
        out[name] = {**definition, "description": f"benchmark histogram {name}"}
    return out


def generate(store, target_bytes: int, seed: int = 16) -> None:
    """One day, 16 partitions (channels x versions x builds), bodies from a pool of 256."""
    rng = random.Random(seed)
    pool = []
    for _ in range(256):
        dims = synthetic.partition_dims(rng.randrange(48))
        body = synthetic.make_body(rng, dims, rng.choice(synthetic.OS_VALUES))
        body["info"]["revision"] = REVISION
        body["histograms"] = {
            name: synthetic.compact_histogram(rng, bucket_count(i))
            for i, name in enumerate(synthetic.HISTOGRAM_NAMES)
        }
        pool.append(json.dumps(body, separators=(",", ":")).encode())
    produced, sequence = 0, 0
    while produced < target_bytes:
        dims = dict(synthetic.partition_dims(sequence % 16), submission_date="20261201")
        batch = []
        for _ in range(2000):
            doc_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            data = pool[rng.randrange(len(pool))]
            batch.append((doc_id, data))
            produced += len(doc_id) + len(data) + 2
            if produced >= target_bytes:
                break
        synthetic.write_partition(store, dims, f"batch{sequence:05d}", batch)
        sequence += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--mappers", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.gettempdir()) / f"bench-aggregates-v2-{args.size_mb}mb"
    os.environ["TELEMETRY_DATA_DIR"] = str(root / "var")
    from aggregates.compute import run_job
    from pipeline.config import load_settings

    settings = load_settings()
    published = Path(settings.published_url.removeprefix("file://"))
    if not (published / ".complete").exists():
        generate(open_store(settings.published_url), args.size_mb * 1_000_000)
        (published / ".complete").write_text("")
    seed_revision(settings.histogram_cache, REVISION, json.dumps(histograms_json()).encode())
    dates = sorted({p.name.split(".")[1] for p in published.rglob("*.lz4")})
    started = time.monotonic()
    groups, summary = run_job(settings, dates, mappers=args.mappers)
    elapsed = time.monotonic() - started
    from aggregates.compute import resolve, revision_info_from_cache
    from histograms.revision_cache import RevisionCache

    days = resolve(groups, revision_info_from_cache(RevisionCache.from_settings(settings)))
    rows = sum(len(day.rows) for day in days.values())
    skipped = sum(sum(day.skipped.values()) for day in days.values())
    mb = summary.uncompressed_bytes / 1e6
    wall = [
        b / s / 1e6
        for b, s in zip(summary.mapper_uncompressed_bytes, summary.mapper_seconds, strict=True)
        if s
    ]
    cpu = [
        b / s / 1e6
        for b, s in zip(summary.mapper_uncompressed_bytes, summary.mapper_cpu_seconds, strict=True)
        if s
    ]
    print(f"aggregates_input: {mb:.0f} MB")
    print(f"aggregates_records: {summary.records} records")
    print(f"aggregates_map_rate: {sum(wall) / len(wall):.1f} MB/s")
    print(f"aggregates_map_rate_cpu: {sum(cpu) / len(cpu):.1f} MB/s")
    print(f"aggregates_job_rate: {mb / elapsed / args.mappers:.1f} MB/s")
    print(f"aggregates_groups: {len(groups)} groups")
    print(f"aggregates_rows: {rows} rows")
    print(f"aggregates_skipped: {skipped} submissions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
