"""Ingest against the 2013 node.js server, same harness, same machine, one sitting (issue 19).

    TS_SNAPSHOT=/path/to/telemetry-server/.git .venv/bin/python bench/ingest_vs_node.py \
        [--rounds 2] [--runs 3] [--duration 20]

Runs the anchor harness (`../shared/bench/anchor-ingest/bench.sh`, or `--harness DIR`): the
original mozilla/telemetry-server `http/server.js` with one worker (read from the local git copy
in TS_SNAPSHOT, never copied into this project; page cache only, not durable), then this
project's `python -m ingest` with its default settings (group-commit fsync, access log on),
alternately, `--rounds` times. Each gets the same wrk load (20 KB bodies, 64 keep-alive
connections, server on CPU 0, wrk on CPU 1). Prints `name: value unit` lines, the goal's
ratio last but one:

    ingest_vs_node_ratio   ours / node requests per second (medians over every run)
    acknowledged_but_missing   2xx answers of ours (wrk's count) not found in the spool or
                               the incoming store after the graceful shutdown

Absolute figures move with the machine's load (printed before and after): on a shared
machine compare the ratio and the CPU per request, not the requests per second.
Skips (exit 0, with the reason) when TS_SNAPSHOT, the harness, wrk, node, bc or taskset is
missing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.records import encode_record  # noqa: E402

DEFAULT_HARNESS = REPO.parent / "shared" / "bench" / "anchor-ingest"
RESULT = re.compile(r"^run\d+ RESULT (.*)$")
ACCOUNT = re.compile(r"stored_bytes=(\d+)")
# The harness's request: its path (a fixed-length random UUID) and the headers ingest keeps.
SAMPLE_PATH = (
    "/submit/telemetry/00000000-0000-4000-8000-000000000000/saved-session/Firefox/23.0/"
    "release/20130814063812"
)
KEPT = {"Content-Length": "20480", "Content-Type": "application/json", "Remote-Addr": "127.0.0.1"}
BODY_BYTES = 20480


def missing_prerequisites(harness: Path) -> str | None:
    snapshot = os.environ.get("TS_SNAPSHOT")
    if not snapshot:
        return "TS_SNAPSHOT is not set (the git dir of a local mozilla/telemetry-server copy)"
    if not Path(snapshot).exists():
        return f"TS_SNAPSHOT={snapshot} does not exist"
    if not (harness / "bench.sh").is_file():
        return f"no anchor harness at {harness} (--harness DIR)"
    for tool in ("wrk", "node", "bc", "taskset", "git"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if len(os.sched_getaffinity(0)) < 2:
        return "the harness needs two CPUs (server on CPU 0, wrk on CPU 1)"
    return None


def run_config(harness: Path, config: str, env: dict[str, str]) -> dict[str, object]:
    """One `bench.sh CONFIG`: its run lines (warm-up left out) and the stored byte count."""
    result = subprocess.run(
        [str(harness / "bench.sh"), config],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    runs = []
    stored = None
    for line in result.stdout.splitlines():
        match = RESULT.match(line)
        if match:
            fields = dict(part.split("=", 1) for part in match.group(1).split() if "=" in part)
            runs.append(fields)
        found = ACCOUNT.search(line)
        if found:
            stored = int(found.group(1))
    if not runs:
        raise SystemExit(f"bench.sh {config} printed no result:\n{result.stdout}\n{result.stderr}")
    return {"runs": runs, "stored_bytes": stored, "warmup_ok": _warmup_ok(result.stdout)}


def _warmup_ok(stdout: str) -> int:
    """2xx answers of the warm-up run (they are stored too)."""
    for line in stdout.splitlines():
        if line.startswith("warmup RESULT"):
            fields = dict(part.split("=", 1) for part in line.split()[2:] if "=" in part)
            return int(fields["reqs"]) - int(fields["err_status"])
    return 0


def acknowledged(run: dict[str, str]) -> int:
    return int(run["reqs"]) - int(run["err_status"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2, help="node, ours pairs (default 2)")
    parser.add_argument("--runs", type=int, default=3, help="runs per server start (default 3)")
    parser.add_argument("--duration", type=int, default=20, help="seconds per run (default 20)")
    parser.add_argument(
        "--harness", type=Path, default=DEFAULT_HARNESS, help=f"default {DEFAULT_HARNESS}"
    )
    args = parser.parse_args()
    problem = missing_prerequisites(args.harness)
    if problem:
        print(f"ingest_vs_node: skipped: {problem}")
        return 0
    env = {
        **os.environ,
        "PROJECT": str(REPO),
        "RUNS": str(args.runs),
        "DUR": f"{args.duration}s",
        "TRUNC": "0",
    }
    record_bytes = len(encode_record(0, SAMPLE_PATH, KEPT, b"x" * BODY_BYTES))
    load_before = os.getloadavg()
    results: dict[str, list[dict[str, str]]] = {"node-1w": [], "ours": []}
    missing = 0
    round_ratios = []
    for _ in range(args.rounds):
        rps = {}
        for config in ("node-1w", "ours"):
            outcome = run_config(args.harness, config, env)
            runs = outcome["runs"]
            results[config].extend(runs)
            rps[config] = statistics.median(float(run["rps"]) for run in runs)
            if config == "ours":
                stored_bytes = outcome["stored_bytes"] or 0
                stored = stored_bytes // record_bytes
                acked = outcome["warmup_ok"] + sum(acknowledged(run) for run in runs)
                missing += max(0, acked - stored)
                if stored_bytes % record_bytes:
                    print(
                        f"warning: {stored_bytes % record_bytes} stored bytes are no whole record"
                    )
        round_ratios.append(rps["ours"] / rps["node-1w"])
    load_after = os.getloadavg()

    def median(config: str, field: str) -> float:
        return statistics.median(float(run[field]) for run in results[config])

    def cpu_per_request(config: str) -> float:
        runs = results[config]
        cpu = sum(float(run["server_cpu_s"]) for run in runs)
        return 1e6 * cpu / max(1, sum(int(run["reqs"]) for run in runs))

    print(f"machine_load_before: {load_before[0]:.2f} (1-min load average, {os.cpu_count()} cpus)")
    print(f"rounds: {args.rounds} (node-1w then ours, {args.runs} x {args.duration} s each)")
    for config, name in (("node-1w", "node"), ("ours", "ours")):
        all_rps = [float(run["rps"]) for run in results[config]]
        print(f"{name}_requests_per_second: {median(config, 'rps'):.0f} req/s")
        print(f"{name}_requests_per_second_range: {min(all_rps):.0f}-{max(all_rps):.0f} req/s")
        print(f"{name}_latency_p99: {median(config, 'p99_ms'):.1f} ms")
        print(f"{name}_cpu_per_request: {cpu_per_request(config):.0f} us")
        print(f"{name}_rss: {max(int(r['rss_total_kb']) for r in results[config]) / 1024:.0f} MB")
    print(f"acknowledged_but_missing: {missing} requests")
    print(f"machine_load_after: {load_after[0]:.2f} (1-min load average)")
    print(f"ingest_vs_node_round_ratios: {' '.join(f'{r:.2f}' for r in round_ratios)} x")
    print(
        "ingest_vs_node_cpu_ratio: "
        f"{cpu_per_request('node-1w') / cpu_per_request('ours'):.2f} x (node / ours CPU per request)"
    )
    ratio = median("ours", "rps") / median("node-1w", "rps")
    print(f"ingest_vs_node_ratio: {ratio:.2f} x")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
