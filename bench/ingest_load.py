"""Load test of the ingest edge: wrk (separate process, keep-alive connections) against one server.

    .venv/bin/python bench/ingest_load.py [--duration 20] [--connections 64] [--body-bytes 20480]

Starts `python -m ingest` (default group-commit fsync, local incoming store in a temporary
data dir) pinned to one CPU, drives it with wrk pinned to another, then shuts the server down
gracefully (which seals and uploads the spool) and reads every batch back from the incoming
store. Prints one `name: value unit` per line.

Acknowledged = responses with status 200 as counted by wrk. wrk cannot say *which* requests
were acknowledged, so "acknowledged but missing" is computed from counts:
max(0, acknowledged - distinct docIds found). Requests still in flight when wrk stops may be
stored without being counted, so found can exceed acknowledged by up to the connection count.
The exact per-docId check is the crash test (tests/ingest/test_crash.py).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import load_settings  # noqa: E402
from pipeline.records import iter_records  # noqa: E402
from pipeline.stores import open_store  # noqa: E402

WRK_SCRIPT = r"""
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  n = 0
  prefix = string.format("%08x-%04x", math.floor(os.time()) % 4294967295, tid)
  body = string.rep("0123456789abcdef", math.floor(tonumber(args[1]) / 16))
  headers = {["Content-Type"] = "application/json; charset=UTF-8", ["Content-Encoding"] = "gzip",
             ["User-Agent"] = "wrk-ingest-bench"}
end

function request()
  n = n + 1
  local path = string.format(
    "/submit/telemetry/%s-4000-8000-%012x/main/Firefox/115.0/release/20230101000000?v=4", prefix, n)
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\"requests\": %d, \"duration_us\": %d, \"non2xx\": %d, \"connect\": %d, \"read\": %d, " ..
    "\"write\": %d, \"timeout\": %d, \"p50_us\": %d, \"p99_us\": %d, \"max_us\": %d}\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"ingest did not listen on port {port} within {timeout}s")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def memory_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def cpu_pressure() -> float:
    """PSI "some avg10" for CPUs: how much other work competed for the cores (0 when idle)."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return float("nan")
    return float(dict(part.split("=") for part in line.split()[1:])["avg10"])


def pin(cpus: set[int]) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=int, default=20, help="seconds of load (default %(default)s)"
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="keep-alive connections (default %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default %(default)s)")
    parser.add_argument(
        "--body-bytes", type=int, default=20 * 1024, help="body size (default %(default)s)"
    )
    parser.add_argument(
        "--fsync-policy",
        default="group",
        choices=("always", "group", "none"),
        help="server fsync policy (default %(default)s)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="keep the server's JSON access log on (to a file)"
    )
    parser.add_argument(
        "--incoming-url",
        default=None,
        help="incoming store URL (default: file:// under the temporary data dir)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (make setup installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    try:
        return run(args, wrk, workdir)
    finally:
        if args.keep:
            print(f"data_dir: {workdir / 'var'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, wrk: str, workdir: Path) -> int:
    """One load run in `workdir`; returns the exit status (1 when anything was lost)."""
    load_before = os.getloadavg()[0]
    data_dir = workdir / "var"
    script = workdir / "submit.lua"
    script.write_text(WRK_SCRIPT)
    port = free_port()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    server_cpus, load_cpus = ({cpus[0]}, set(cpus[1:])) if len(cpus) > 1 else ({cpus[0]}, {cpus[0]})
    bench_env = {"TELEMETRY_DATA_DIR": str(data_dir), "TELEMETRY_FSYNC_POLICY": args.fsync_policy}
    if args.incoming_url:
        bench_env["TELEMETRY_INCOMING_URL"] = args.incoming_url
    env = {**os.environ, **bench_env}
    command = [sys.executable, "-m", "ingest", "--port", str(port), "--log-level", "WARNING"]
    if not args.access_log:
        command.append("--no-access-log")
    else:
        command[-2:] = ["--log-level", "INFO"]
    server_log = open(workdir / "server.log", "wb")
    server = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=server_log,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: pin(server_cpus),
    )
    try:
        wait_for_port(port)
        cpu_before, wall_before = cpu_times(server.pid), time.monotonic()
        result = subprocess.run(
            [
                wrk,
                "-t",
                str(args.threads),
                "-c",
                str(args.connections),
                "-d",
                f"{args.duration}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                f"http://127.0.0.1:{port}",
                "--",
                str(args.body_bytes),
            ],
            capture_output=True,
            text=True,
            preexec_fn=lambda: pin(load_cpus),
            check=True,
        )
        wall = time.monotonic() - wall_before
        pressure = cpu_pressure()
        cpu_after = cpu_times(server.pid)
        user, system = cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]
        cpu = user + system
        memory = memory_kib(server.pid)
        os.kill(server.pid, signal.SIGTERM)
        exit_code = server.wait(300)
    finally:
        if server.poll() is None:
            server.kill()
        server_log.close()

    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{result.stdout}\n{result.stderr}")
    stats = json.loads(line.removeprefix("BENCH_JSON "))
    acknowledged = stats["requests"] - stats["non2xx"]

    settings = load_settings(env=bench_env)
    store = open_store(settings.incoming_url)
    seen: collections.Counter[str] = collections.Counter()
    batches = 0
    for info in store.list(""):
        batches += 1
        with store.open(info.key) as stream:
            for record in iter_records(stream, info.key):
                seen[record.path.split("/")[3]] += 1
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    leftover = list(Path(settings.spool_dir).glob("*.open")) + list(
        Path(settings.spool_dir).glob("*.batch")
    )

    seconds = stats["duration_us"] / 1e6
    print(f"server_cpus: {','.join(map(str, sorted(server_cpus)))} cpu")
    print(f"load_generator_cpus: {','.join(map(str, sorted(load_cpus)))} cpu")
    print(f"fsync_policy: {args.fsync_policy}")
    print(f"connections: {args.connections} conn")
    print(f"body_size: {args.body_bytes} bytes")
    print(f"duration: {seconds:.1f} s")
    print(f"requests_per_second: {acknowledged / seconds:.0f} req/s")
    print(f"latency_p50: {stats['p50_us'] / 1000:.2f} ms")
    print(f"latency_p99: {stats['p99_us'] / 1000:.2f} ms")
    print(f"latency_max: {stats['max_us'] / 1000:.2f} ms")
    print(f"server_cpu: {100 * cpu / wall:.0f} %")
    per_request = 1e6 * cpu / max(acknowledged, 1)
    print(f"server_cpu_per_request: {per_request:.0f} us")
    print(f"server_cpu_user_per_request: {1e6 * user / max(acknowledged, 1):.0f} us")
    print(f"server_cpu_system_per_request: {1e6 * system / max(acknowledged, 1):.0f} us")
    print(f"projected_per_core: {1e6 / per_request:.0f} req/s")
    print(f"machine_load_before: {load_before:.2f} (1-min load average, {os.cpu_count()} cpus)")
    print(f"cpu_pressure_during: {pressure:.0f} % (PSI some avg10: time tasks waited for a CPU)")
    print(f"server_rss: {memory.get('VmRSS', 0) / 1024:.0f} MB")
    print(f"server_rss_peak: {memory.get('VmHWM', 0) / 1024:.0f} MB")
    print(f"non_2xx: {stats['non2xx']} responses")
    print(
        f"socket_errors: {stats['connect'] + stats['read'] + stats['write'] + stats['timeout']} errors"
    )
    print(f"acknowledged: {acknowledged} requests")
    print(f"found_in_store: {len(seen)} docIds")
    print(f"stored_batches: {batches} batches")
    print(f"duplicates_in_store: {duplicates} records")
    print(f"acknowledged_but_missing: {max(0, acknowledged - len(seen))} requests")
    print(f"spool_files_left: {len(leftover)} files")
    print(f"server_exit_code: {exit_code}")
    return 0 if exit_code == 0 and acknowledged <= len(seen) and duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
