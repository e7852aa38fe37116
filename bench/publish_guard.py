"""Benchmark: the costs of the scheduler's safety checks, in CPU seconds of this process.

- `tarball_4gib_declared_refusal_cpu`: a ~4 MB gzip tarball whose member declares 4 GiB,
  refused by scheduler.tarball (it took 24 s of dashboard CPU before the streaming checks);
- `publish_guard_json_mb_per_cpu_s` / `publish_guard_csv_mb_per_cpu_s`: how fast the raw-data
  guard (scheduler.publish_scan) reads dense JSON and CSV output (the worst and the usual case);
- `sandbox_start_wall`: wall time of a sandboxed `true` (bubblewrap + setpriv + prlimit).

    .venv/bin/python bench/publish_guard.py
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scheduler import sandbox  # noqa: E402
from scheduler.errors import TarballError  # noqa: E402
from scheduler.publish_scan import Scanner  # noqa: E402
from scheduler.tarball import validate_tarball  # noqa: E402


def tarball_refusal() -> None:
    info = tarfile.TarInfo("huge.bin")
    info.size = 4 * 1024**3
    data = gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + bytes(4 * 1024 * 1024), 1)
    start = time.process_time()
    try:
        validate_tarball(
            data, max_compressed=50 * 1024**2, max_bytes=500 * 1024**2, max_members=10_000
        )
    except TarballError:
        pass
    else:
        raise SystemExit("the 4 GiB tarball was accepted")
    print(f"tarball_4gib_declared_refusal_cpu: {time.process_time() - start:.4f} s")


def guard_rate(name: str, content: bytes) -> None:
    scanner = Scanner(lambda ids: set())
    with tempfile.NamedTemporaryFile() as handle:
        handle.write(content)
        handle.flush()
        start = time.process_time()
        scanner.scan_file(Path(handle.name), name)
        spent = time.process_time() - start
    print(f"publish_guard_{name}_mb_per_cpu_s: {len(content) / 1e6 / spent:.1f} MB/s")


def sandbox_start() -> None:
    problem = sandbox.available()
    if problem:
        print(f"sandbox_start_wall: unavailable ({problem})")
        return
    with tempfile.TemporaryDirectory() as home:
        spec = sandbox.SandboxSpec(home=Path(home))
        start = time.perf_counter()
        for _ in range(5):
            subprocess.run(sandbox.build_command(spec, ["/bin/true"]), check=True)
        print(f"sandbox_start_wall: {(time.perf_counter() - start) / 5:.3f} s")


if __name__ == "__main__":
    tarball_refusal()
    guard_rate("json", b'{"k": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "name": "abcdef"},\n' * 400_000)
    guard_rate("csv", b"1,2,3,4,5,6,7,8,9,10\n" * 1_000_000)
    sandbox_start()
