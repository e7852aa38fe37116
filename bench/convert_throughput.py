"""Convert throughput: real-size records from the fixtures through `python -m convert --drain`.

Builds N records (the idle-daily v1 payload and the ESR 153 v4 main ping, alternating, each
with a fresh docId) in incoming batches on local directories with the SQLite queue and
database, pre-seeds the histogram cache with both revisions, then runs the converter with one
worker and with `--workers 2` and prints records/s, MB/s and peak RSS per run.

    .venv/bin/python bench/convert_throughput.py            # 10,000 records (the issue's size)
    .venv/bin/python bench/convert_throughput.py --quick    # 4,000 records

Targets (issue 5): >= 1,200 records/s per worker process end to end, >= 1.7x with 2 workers.
"Wall" figures include interpreter start-up and the drain's final empty poll; "steady" figures
are measured between the first and the last batch's stats log lines. On a busy machine
wall-clock rates say more about the neighbours than about the converter, so CPU-based rates
are printed too: "records per CPU second" (user+sys time of all convert processes, start-up
included) and "steady records per CPU second" (each worker's process time inside its batches,
from the `cpu=` of the stats lines: the capacity of one idle core per worker). The load
average is printed at the start of each run so readers can judge the wall-clock figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import load_settings  # noqa: E402
from pipeline.queues import open_queue  # noqa: E402
from pipeline.records import encode_record  # noqa: E402
from pipeline.stores import open_store  # noqa: E402

FIXTURES = Path(os.environ.get("TELEMETRY_SHARED_FIXTURES", REPO.parent / "shared" / "fixtures"))
ESR_REV = "releases/mozilla-esr153/a9effd9e521653405f0ffd311e8edf90bde92237"
IDLE_REV = "releases/mozilla-release/a55c55edf302"
STATS_LINE = re.compile(r"^(\S+ \S+) INFO .*convert stats batch=\S+ records=(\d+)")
BATCH_CPU = re.compile(r"convert stats batch=\S+ records=(\d+) .* cpu=([0-9.]+)")


def prepare(root: Path, records: int, per_batch: int) -> tuple[dict[str, str], int, int]:
    """Write the batches and queue messages; return (env, input bytes, decompressed bytes)."""
    cache = root / "cache"
    for rev, source in (
        (IDLE_REV, FIXTURES / "histograms" / IDLE_REV / "Histograms.json"),
        (ESR_REV, FIXTURES / "histograms/enterprise-firefox-72a855fe/Histograms.json"),
    ):
        (cache / rev).mkdir(parents=True)
        shutil.copy(source, cache / rev)
    env = {
        "TELEMETRY_DATA_DIR": str(root / "var"),
        "TELEMETRY_HISTOGRAM_CACHE": str(cache),
        "TELEMETRY_HG_BASE_URL": "http://127.0.0.1:9",
    }
    settings = load_settings(env)
    incoming, queue = open_store(settings.incoming_url), open_queue(settings.queue_url)
    idle = (FIXTURES / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
    idle_path = (
        (FIXTURES / "payloads/idle-daily-firefox-23.0.1.path").read_text().strip().split("/")
    )
    esr = gzip.compress((FIXTURES / "firefox/main-ping-esr153.json").read_bytes())
    kinds = [
        (idle, lambda d: "/".join(idle_path[:3] + [d] + idle_path[4:]), len(gzip.decompress(idle))),
        (
            esr,
            lambda d: f"/submit/telemetry/{d}/main/Firefox/153.7.0/esr/20261103151912?v=4",
            len(gzip.decompress(esr)),
        ),
    ]
    now = int(time.time() * 1000)
    total_in = total_json = 0
    for start in range(0, records, per_batch):
        chunk = bytearray()
        for i in range(start, min(records, start + per_batch)):
            body, path, size = kinds[i % 2]
            chunk += encode_record(
                now + i, path(str(uuid.uuid4())), {"Content-Encoding": "gzip"}, body
            )
            total_json += size
        key = f"bench/batch-{start // per_batch:05d}.tpr"
        incoming.put(key, bytes(chunk))
        queue.send(
            json.dumps(
                {"key": key, "records": min(per_batch, records - start), "bytes": len(chunk)}
            )
        )
        total_in += len(chunk)
    return env, total_in, total_json


def _measure(env: dict[str, str], workers: int, out: multiprocessing.Queue) -> None:
    """Run in a fresh process so that RUSAGE_CHILDREN is this run's peak RSS only."""
    full_env = {**os.environ, **env}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "convert", "--drain", "--workers", str(workers)],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.put(
        (result.returncode, wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, result.stderr)
    )


def steady_rate(log: str) -> float | None:
    stamps = []
    for line in log.splitlines():
        match = STATS_LINE.match(line)
        if match:
            moment = dt.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")
            stamps.append((moment, int(match[2])))
    if len(stamps) < 3:
        return None
    stamps.sort()
    seconds = (stamps[-1][0] - stamps[0][0]).total_seconds()
    return sum(n for _, n in stamps[1:]) / seconds if seconds > 0 else None


def steady_cpu_rate(log: str) -> float | None:
    """Records per CPU-second inside the batches (each worker's own process time per batch):
    the converter's cost without interpreter start-up, whatever the neighbours do."""
    records = cpu = 0.0
    for match in BATCH_CPU.finditer(log):
        records += int(match[1])
        cpu += float(match[2])
    return records / cpu if cpu > 0 else None


def run(workers: int, records: int, per_batch: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="convert-bench-") as tmp:
        env, in_bytes, json_bytes = prepare(Path(tmp), records, per_batch)
        context = multiprocessing.get_context("spawn")
        out = context.Queue()
        load_start = os.getloadavg()[0]
        proc = context.Process(target=_measure, args=(env, workers, out))
        proc.start()
        code, wall, peak_kb, cpu, log = out.get()
        proc.join()
        if code != 0:
            raise SystemExit(f"convert failed with {code}:\n{log[-3000:]}")
        published = sum(int(m) for m in re.findall(r" published=(\d+)", log))
        if published != records:
            raise SystemExit(
                f"only {published} of {records} records were published:\n{log[-3000:]}"
            )
        return {
            "load_start": load_start,
            "steady_cpu_rps": steady_cpu_rate(log) or 0.0,
            "wall_s": wall,
            "rps": records / wall,
            "steady_rps": steady_rate(log) or 0.0,
            "in_mbps": in_bytes / wall / 1e6,
            "json_mbps": json_bytes / wall / 1e6,
            "peak_rss_mb": peak_kb / 1024,
            "cpu_s": cpu,
            "cpu_rps": records / cpu,
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records", type=int, default=10_000, help="records to convert (default: 10000)"
    )
    parser.add_argument("--quick", action="store_true", help="4,000 records, for a quick look")
    parser.add_argument(
        "--per-batch", type=int, default=100, help="records per incoming batch (default: 100)"
    )
    args = parser.parse_args()
    records = 4_000 if args.quick else args.records
    print(f"cpu_count: {os.cpu_count()}")
    print(f"load_average_at_start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)")
    print(f"records: {records}")
    results = {}
    for workers in (1, 2):
        r = results[workers] = run(workers, records, args.per_batch)
        tag = f"workers_{workers}"
        print(f"{tag}_load_average_1min_at_start: {r['load_start']:.2f}")
        print(f"{tag}_wall: {r['wall_s']:.2f} s")
        print(f"{tag}_records_per_s: {r['rps']:.0f} records/s")
        print(f"{tag}_steady_records_per_s: {r['steady_rps']:.0f} records/s")
        print(f"{tag}_records_per_s_per_worker: {r['steady_rps'] / workers:.0f} records/s")
        print(f"{tag}_input_MB_per_s: {r['in_mbps']:.1f} MB/s (gzip bodies as received)")
        print(f"{tag}_json_MB_per_s: {r['json_mbps']:.1f} MB/s (decompressed JSON)")
        print(f"{tag}_peak_rss: {r['peak_rss_mb']:.0f} MB (largest worker process)")
        print(f"{tag}_cpu_seconds: {r['cpu_s']:.1f} s (user+sys, all processes)")
        print(
            f"{tag}_records_per_cpu_second: {r['cpu_rps']:.0f} records/s "
            "(all processes, start-up included)"
        )
        print(
            f"{tag}_steady_records_per_cpu_second: {r['steady_cpu_rps']:.0f} records/s "
            "(inside batches, per worker: the capacity of one idle core)"
        )
    print(f"scaling_2_workers_wall: {results[2]['rps'] / results[1]['rps']:.2f} x")
    if results[1]["steady_rps"]:
        print(
            f"scaling_2_workers_steady: {results[2]['steady_rps'] / results[1]['steady_rps']:.2f} x"
        )
    print(f"load_average_at_end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)")


if __name__ == "__main__":
    main()
