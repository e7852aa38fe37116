"""Benchmark: what the country lookup (convert/geo.py) costs a convert worker.

Prints `name: value unit` lines: the time to load the packaged country database once per
process, the memory it adds to the worker (peak RSS growth), and the CPU time of one
`GeoLocator.locate` per record (lookup plus header rewrite), over public IPv4 and IPv6
addresses spread across the address space.

    .venv/bin/python bench/geo_lookup.py [--records 200000]
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from convert.geo import GeoLocator, country_of_address  # noqa: E402
from pipeline.records import Record  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    rng = random.Random(15)
    addresses = [
        ".".join(str(rng.randrange(1, 224 if i == 0 else 256)) for i in range(4))
        for _ in range(args.records // 2)
    ] + [f"2a0{rng.randrange(10)}:{rng.randrange(65536):x}::1" for _ in range(args.records // 2)]
    records = [
        Record(0, "/submit/telemetry/x", {"Remote-Addr": a, "User-Agent": "b"}, b"")
        for a in addresses
    ]
    before = peak_rss_mib()
    started = time.process_time()
    country_of_address("81.2.69.160")
    print(f"geo_database_load: {time.process_time() - started:.3f} s")
    print(f"geo_database_rss: {peak_rss_mib() - before:.1f} MiB")
    locator = GeoLocator()
    started = time.process_time()
    for record in records:
        locator.locate(record)
    cpu = time.process_time() - started
    print(f"geo_locate_per_record: {cpu / len(records) * 1e6:.1f} us")
    print(f"geo_locate_rate: {len(records) / cpu:,.0f} records/s")


if __name__ == "__main__":
    main()
