"""MapReduce scan throughput: `python -m mapreduce.job` over generated published data.

    .venv/bin/python bench/mapreduce_scan.py [--size-mb 1024] [--skip-dask]

Generates about --size-mb of uncompressed, realistic converted records (about 10 KB each, 120
compact histograms) in the published layout once, caching them under the temp directory, then
runs each job as its own process (the real CLI) and prints `name: value unit` lines:

- the baseline, measured in the same run: a bare loop (this process, one core) that
  decompresses every file and `orjson.loads` every record: what a job that parses whole
  records could at best do;
- simple_counter with 1 and 2 mappers: MB/s of uncompressed input per mapper (as measured
  inside the mappers, and as the whole job's rate divided by mappers), speed-up 1 -> 2;
- osdistribution (reads one field per record) and histogram_aggregate (one histogram per
  record) with 2 mappers, and their rate per mapper CPU second over the baseline's per CPU
  second (`*_vs_bare_parse`): a job pays only for what it reads (mapreduce.lazyjson);
- peak RSS of the whole job (the job process and all its children, sampled with psutil), for
  the full input and for a quarter of it selected by a filter: it should not grow with input;
- the Dask engine on the same simple_counter job, on a pre-started LocalCluster (2 workers,
  1 thread each) and cold (starting its own cluster), and on a job long enough for task
  overhead not to dominate (every histogram of every record summed per channel: about 16 CPU
  seconds per 256 MB, so the default 1024 MB runs well over 20 s on two cores).

Targets (issues 6 and 19): >= 200 MB/s per mapper for simple_counter, >= 1.8x from 1 to 2
mappers, osdistribution >= 3x and histogram_aggregate >= 1.0x the bare parse, peak RSS
independent of input size, Dask within 1.3x of the local engine on the long job.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mapreduce import synthetic  # noqa: E402
from pipeline.stores import open_store  # noqa: E402

EXAMPLES = REPO / "mapreduce" / "examples"
DATA_VERSION = "v2"


def dataset(size_mb: int, base: Path) -> Path:
    """Generate (once) and return the published directory for `size_mb` of records."""
    root = base / f"{size_mb}MB-{DATA_VERSION}"
    marker = root / "complete.json"
    published = root / "published"
    if marker.exists():
        return published
    started = time.monotonic()
    store = open_store(f"file://{published}")
    written = synthetic.generate(store, size_mb * 1_000_000, files=64, records_per_object=1000)
    marker.write_text(json.dumps({"objects": len(written), "records": sum(written.values())}))
    print(
        f"generated: {size_mb} MB in {len(written)} objects, {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return published


class PeakRss:
    """Samples the summed RSS of a process and all its descendants."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                for proc in [self.process, *self.process.children(recursive=True)]:
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            self.peak = max(self.peak, total)
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_job(script: str, published: Path, work: Path, *extra: str) -> dict:
    out = work / "out.txt"
    command = [
        sys.executable,
        "-m",
        "mapreduce.job",
        str(EXAMPLES / script),
        "-b",
        f"file://{published}",
        "-w",
        str(work),
        "-o",
        str(out),
        "--no-progress",
        *extra,
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    sampler = PeakRss(process.pid)
    stdout, stderr = process.communicate()
    wall = time.monotonic() - started
    peak = sampler.stop()
    if process.returncode != 0:
        raise SystemExit(f"job failed ({process.returncode}): {' '.join(command)}\n{stderr}")
    done = re.search(r"\((\d+) bytes, (\d+) uncompressed\).*, ([\d.]+)s\n", stderr)
    rate = re.search(r"map rate: ([\d.]+) MB/s per mapper.*; ([\d.]+) MB/s per CPU second", stderr)
    assert done and rate, stderr
    return {
        "wall": wall,
        "elapsed": float(done.group(3)),
        "uncompressed_mb": int(done.group(2)) / 1e6,
        "mapper_rate": float(rate.group(1)),
        "mapper_cpu_rate": float(rate.group(2)),
        "peak_rss_mb": peak / 1e6,
        "lines": out.read_text().count("\n"),
    }


# A long job for the engine comparison: every histogram of every record, summed per channel.
ALL_HISTOGRAMS = """
from orjson import loads

from mapreduce.examples.histogram_aggregate import add_arrays


def map(key, dims, value, context):
    for name, histogram in (loads(value).get("histograms") or {}).items():
        context.write((dims[2], name, len(histogram)), histogram)


def combine(key, values, context):
    total = None
    for histogram in values:
        total = histogram if total is None else add_arrays(total, histogram)
    context.write(key, total)


reduce = combine
"""


def bare_parse(published: Path) -> dict:
    """The baseline: decompress every file and orjson.loads every record, in this process."""
    import orjson

    from mapreduce.reader import decompressed_chunks

    files = sorted(published.rglob("*.lz4"))
    total = records = 0
    started, cpu_started = time.monotonic(), time.process_time()
    for path in files:
        with open(path, "rb") as stream:
            pending = b""
            for data in decompressed_chunks(stream):
                total += len(data)
                lines = (pending + data).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    orjson.loads(line[line.find(b"\t") + 1 :])
                    records += 1
    cpu = time.process_time() - cpu_started
    return {
        "rate": total / 1e6 / (time.monotonic() - started),
        "cpu_rate": total / 1e6 / cpu,
        "records": records,
        "files": len(files),
    }


def report(name: str, run: dict, mappers: int) -> None:
    print(
        f"{name}_mapper_rate: {run['mapper_rate']:.1f} MB/s per mapper (wall clock inside each mapper)"
    )
    print(f"{name}_mapper_cpu_rate: {run['mapper_cpu_rate']:.1f} MB/s per CPU second of a mapper")
    print(
        f"{name}_job_rate: {run['uncompressed_mb'] / run['elapsed'] / mappers:.1f} MB/s per mapper (whole job)"
    )
    print(f"{name}_time: {run['elapsed']:.2f} s")
    print(f"{name}_peak_rss: {run['peak_rss_mb']:.0f} MB (job process and all children)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size-mb", type=int, default=1024, help="uncompressed input size (default: %(default)s)"
    )
    parser.add_argument(
        "--cache",
        default=os.path.join(tempfile.gettempdir(), "mapreduce-bench"),
        help="where generated data is kept between runs (default: %(default)s)",
    )
    parser.add_argument("--skip-dask", action="store_true", help="skip the Dask engine runs")
    args = parser.parse_args()
    published = dataset(args.size_mb, Path(args.cache))
    work = Path(tempfile.mkdtemp(prefix="mapreduce-bench-work-"))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")

    bare = bare_parse(published)
    print(
        f"bare_parse_cpu_rate: {bare['cpu_rate']:.1f} MB/s per CPU second (decompress + orjson.loads, one core)"
    )
    print(f"bare_parse_rate: {bare['rate']:.1f} MB/s (wall clock)")

    one = run_job("simple_counter.py", published, work, "-m", "1")
    two = run_job("simple_counter.py", published, work, "-m", "2")
    print(f"input: {one['uncompressed_mb']:.0f} MB uncompressed")
    report("simple_counter_1_mapper", one, 1)
    report("simple_counter_2_mappers", two, 2)
    print(f"speedup_1_to_2_mappers: {one['elapsed'] / two['elapsed']:.2f} x")

    quarter_filter = work / "quarter.json"
    quarter_filter.write_text(
        json.dumps(
            {"dimensions": [{"field_name": "appUpdateChannel", "allowed_values": "release"}]}
        )
    )
    quarter = run_job("simple_counter.py", published, work, "-m", "2", "-f", str(quarter_filter))
    print(
        f"simple_counter_2_mappers_quarter_input_peak_rss: {quarter['peak_rss_mb']:.0f} MB "
        f"(input {quarter['uncompressed_mb']:.0f} MB)"
    )
    print(
        f"peak_rss_full_over_quarter_input: {two['peak_rss_mb'] / quarter['peak_rss_mb']:.2f} x "
        f"(input ratio {two['uncompressed_mb'] / quarter['uncompressed_mb']:.1f} x)"
    )

    for script, name in (
        ("osdistribution.py", "osdistribution"),
        ("histogram_aggregate.py", "histogram_aggregate"),
    ):
        run = run_job(script, published, work, "-m", "2", "-r", "2")
        report(f"{name}_2_mappers", run, 2)
        print(
            f"{name}_vs_bare_parse: {run['mapper_cpu_rate'] / bare['cpu_rate']:.2f} x "
            f"(per mapper CPU second over the bare loop's per CPU second)"
        )

    if not args.skip_dask:
        import dask
        from dask.distributed import LocalCluster

        from mapreduce.dask_runner import WORKER_CONFIG

        with (
            dask.config.set(WORKER_CONFIG),
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
        ):
            warm = run_job(
                "simple_counter.py",
                published,
                work,
                "-m",
                "2",
                "--engine",
                "dask",
                "--scheduler",
                cluster.scheduler_address,
            )
            long_job = work / "all_histograms.py"
            long_job.write_text(ALL_HISTOGRAMS)
            long_local = run_job(str(long_job), published, work, "-m", "2", "-r", "2")
            long_dask = run_job(
                str(long_job),
                published,
                work,
                "-m",
                "2",
                "-r",
                "2",
                "--engine",
                "dask",
                "--scheduler",
                cluster.scheduler_address,
            )
        assert warm["lines"] == two["lines"]
        print(f"dask_simple_counter_2_workers_time: {warm['elapsed']:.2f} s (running cluster)")
        print(
            f"dask_simple_counter_2_workers_mapper_cpu_rate: {warm['mapper_cpu_rate']:.1f} MB/s per CPU second"
        )
        print(f"dask_vs_local_ratio: {warm['elapsed'] / two['elapsed']:.2f} x")
        assert long_dask["lines"] == long_local["lines"]
        print(f"all_histograms_local_time: {long_local['elapsed']:.2f} s (2 mappers, 2 reducers)")
        print(f"all_histograms_dask_time: {long_dask['elapsed']:.2f} s (running cluster)")
        print(f"dask_vs_local_long_job_ratio: {long_dask['elapsed'] / long_local['elapsed']:.2f} x")
        print(
            f"dask_vs_local_long_job_cpu_rate_ratio: "
            f"{long_local['mapper_cpu_rate'] / long_dask['mapper_cpu_rate']:.2f} x "
            "(local mapper MB/s per CPU second over Dask's: the engine's own cost, less load noise)"
        )
        cold = run_job("simple_counter.py", published, work, "-m", "2", "--engine", "dask")
        print(
            f"dask_simple_counter_cold_time: {cold['elapsed']:.2f} s (including LocalCluster start)"
        )
    print(f"machine: load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
