"""The analyst's tools: how fast records are read one by one, exported, and reached over SSH.

    .venv/bin/python bench/analyst_tools.py [--size-mb 64]

Generates --size-mb of realistic converted records in the published layout (cached under the
temp directory, shared with bench/mapreduce_scan.py's generator) and prints `name: value unit`:

- `read_records`: `mapreduce.read()` (decompress, parse, dimensions), records/s and MB/s;
- `cat`: `python -m mapreduce.cat` to /dev/null, MB/s of uncompressed input;
- `export_parquet`: `mapreduce.export` to a Hive-partitioned dataset, MB/s and output size;
- `duckdb_count`: a DuckDB GROUP BY over the export (when duckdb is installed), seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import mapreduce  # noqa: E402
from mapreduce import synthetic  # noqa: E402
from mapreduce.export import export_parquet  # noqa: E402
from pipeline.stores import open_store  # noqa: E402


def dataset(size_mb: int, base: Path) -> tuple[Path, int]:
    root = base / f"analyst-{size_mb}MB"
    marker = root / "complete.json"
    published = root / "published"
    if not marker.exists():
        store = open_store(f"file://{published}")
        written = synthetic.generate(store, size_mb * 1_000_000, files=16, records_per_object=500)
        marker.write_text(json.dumps({"records": sum(written.values())}))
    return published, json.loads(marker.read_text())["records"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=64)
    args = parser.parse_args()
    base = Path(tempfile.gettempdir()) / "telemetry-bench"
    published, records = dataset(args.size_mb, base)
    url = f"file://{published}"
    size = args.size_mb

    started = time.monotonic()
    count = sum(1 for _ in mapreduce.read(store=url))
    seconds = time.monotonic() - started
    assert count == records, (count, records)
    print(f"read_records: {count / seconds:.0f} records/s")
    print(f"read_records_rate: {size / seconds:.1f} MB/s")

    env = {**os.environ, "TELEMETRY_PUBLISHED_URL": url}
    started = time.monotonic()
    with open(os.devnull, "wb") as sink:
        subprocess.run(
            [sys.executable, "-m", "mapreduce.cat"], cwd=REPO, env=env, stdout=sink, check=True
        )
    print(f"cat: {size / (time.monotonic() - started):.1f} MB/s")

    out = base / f"analyst-{size}MB-parquet"
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    exported = export_parquet(None, out, store=url)
    seconds = time.monotonic() - started
    assert exported == records
    parquet_bytes = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    print(f"export_parquet: {size / seconds:.1f} MB/s")
    print(f"export_parquet_size: {parquet_bytes / 1e6:.1f} MB")
    try:
        import duckdb
    except ImportError:
        return
    started = time.monotonic()
    duckdb.sql(
        f"SELECT appUpdateChannel, json_extract_string(json, '$.info.OS'), count(*) "
        f"FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true) GROUP BY ALL"
    ).fetchall()
    print(f"duckdb_count: {time.monotonic() - started:.2f} s")


if __name__ == "__main__":
    main()
