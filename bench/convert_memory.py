"""Peak RSS of one convert worker on a batch of maximal records (memory amplification).

Each record is ~8 KB of gzip that decompresses to just under the decompression limit
(TELEMETRY_MAX_DECOMPRESSED_BYTES, 8 MiB): the most memory an unauthenticated client can make
a worker spend per byte it sends. The batch is as large as a spool file gets (64 MiB of
records by default, ~8,000 records, ~64 GB decompressed). `python -m convert --drain` runs
it with one worker on local directories, the SQLite queue and database; the peak RSS is the
worker's (the child's ru_maxrss). The stated bound: under 256 MB whatever the batch.

    .venv/bin/python bench/convert_memory.py               # 64 MiB batch (several minutes)
    .venv/bin/python bench/convert_memory.py --batch-mib 4 # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import load_settings  # noqa: E402
from pipeline.queues import open_queue  # noqa: E402
from pipeline.records import encode_record  # noqa: E402
from pipeline.stores import open_store  # noqa: E402
from tests.support.convert import maximal_record  # noqa: E402

BOUND_MB = 256


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-mib", type=float, default=64.0, help="batch size (default 64)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-convert-memory-") as root:
        env = dict(os.environ, TELEMETRY_DATA_DIR=str(Path(root) / "var"))
        settings = load_settings(env)
        target = int(args.batch_mib * 1024 * 1024)
        chunks, size, records = [], 0, 0
        while size < target:
            chunk = encode_record(int(time.time() * 1000), *maximal_record())
            chunks.append(chunk)
            size += len(chunk)
            records += 1
        open_store(settings.incoming_url).put("bench/max.tpr", b"".join(chunks))
        del chunks
        queue = open_queue(settings.queue_url)
        queue.send(json.dumps({"key": "bench/max.tpr", "records": records, "bytes": size}))
        queue.close()
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "convert", "--drain", "--log-level", "WARNING"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.monotonic() - started
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
            return 1
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    decompressed_gb = records * settings.max_decompressed_bytes / 1e9
    print(f"convert_memory_batch: {size / 2**20:.1f} MiB")
    print(f"convert_memory_records: {records} records")
    print(f"convert_memory_decompressed: {decompressed_gb:.1f} GB")
    print(f"convert_memory_seconds: {seconds:.1f} s")
    print(f"convert_memory_peak_worker_rss: {peak_mb:.0f} MB")
    print(f"convert_memory_within_bound: {int(peak_mb < BOUND_MB)} (bound {BOUND_MB} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
