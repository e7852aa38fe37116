"""Aggregates API latency: /telemetry/api/v1/* over 1,000 metrics x 50 versions x 60 days.

    .venv/bin/python bench/aggregates_api.py [--metrics 1000] [--versions 50] [--days 60]

Publishes day files the size of that many metrics, versions and days (one channel, one build
per version, 20-bucket histograms; 3,000,000 rows at the defaults) to a public store under the
temp directory once, lets the dashboard's read cache load them (the first request after a new
day is published pays this), then asks the dashboard's API (Flask test client, in process, the
embedded defaults) and prints `name: value unit` lines: p50 and p95 latency of filters, a
histogram of one version over all days, a histogram over a 10-version range, and the evolution
of a metric over all versions by build ID and by date.

Target (issue 16): every view's API call answers in < 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aggregates.compute import DayAggregate  # noqa: E402
from aggregates.dayfile import INDEX_NAME, day_path, encode_day  # noqa: E402
from histograms.buckets import exponential_buckets  # noqa: E402
from pipeline.stores import open_store  # noqa: E402
from pipeline.system_jobs import AGGREGATES_JOB  # noqa: E402

BUCKETS = exponential_buckets(1, 10000, 20)


def publish_days(public, metrics: int, versions: int, days: int) -> None:
    rng = random.Random(5)
    index = {"format": 1, "days": {}}
    for d in range(days):
        date = f"2026{(d // 28) + 1:02d}{(d % 28) + 1:02d}"
        day = DayAggregate(date)
        layout = day.layout_id("exponential", BUCKETS)
        for v in range(versions):
            dims = ("release", f"{100 + v}.0", f"2026010{v % 10}{v:06d}", "main", "Firefox",
                    "Linux", "6.1", "x86-64")  # fmt: skip
            for m in range(metrics):
                counts = [rng.randrange(50) for _ in BUCKETS]
                day.rows[(*dims, f"METRIC_{m:04d}", layout)] = [100, sum(counts) * 7, *counts]
        day.descriptions = {
            f"METRIC_{m:04d}": f"benchmark metric number {m}" for m in range(metrics)
        }
        public.put(
            f"{AGGREGATES_JOB}/data/{day_path(date)}", encode_day(day, "2026-12-01T00:00:00Z")
        )
        index["days"][date] = {
            "computed_at": "2026-12-01T00:00:00Z",
            "source": "",
            "rows": len(day.rows),
        }
    public.put(f"{AGGREGATES_JOB}/data/{INDEX_NAME}", json.dumps(index).encode())


def timed(client, url: str, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.get_data(as_text=True)[:300])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    root = (
        Path(tempfile.gettempdir())
        / f"bench-aggregates-api-{args.metrics}x{args.versions}x{args.days}"
    )
    os.environ["TELEMETRY_DATA_DIR"] = str(root / "var")
    from dashboard import create_app
    from pipeline.config import load_settings

    settings = load_settings()
    marker = root / "published.done"
    if not marker.exists():
        started = time.monotonic()
        publish_days(open_store(settings.public_url), args.metrics, args.versions, args.days)
        marker.write_text("")
        print(f"aggregates_api_publish: {time.monotonic() - started:.1f} s")
    app = create_app(settings, {"AGGREGATES_SYNC_SECONDS": 3600})
    client = app.test_client()
    started = time.monotonic()
    client.get("/telemetry/api/v1/filters")  # loads whatever the cache does not hold yet
    print(f"aggregates_api_first_request: {time.monotonic() - started:.2f} s")
    rng = random.Random(1)
    last = 100 + args.versions - 1
    queries = {
        "filters": lambda: "/telemetry/api/v1/filters",
        "histogram_one_version": lambda: f"/telemetry/api/v1/histogram?metric=METRIC_{rng.randrange(args.metrics):04d}&channel=release&version={rng.randrange(100, last + 1)}.0",
        "histogram_ten_versions": lambda: f"/telemetry/api/v1/histogram?metric=METRIC_{rng.randrange(args.metrics):04d}&channel=release&version={last - 9}.0..{last}.0",
        "evolution_by_build": lambda: f"/telemetry/api/v1/evolution?metric=METRIC_{rng.randrange(args.metrics):04d}&channel=release",
        "evolution_by_date": lambda: f"/telemetry/api/v1/evolution?metric=METRIC_{rng.randrange(args.metrics):04d}&channel=release&by=submission_date&version={last - 9}.0..{last}.0",
    }  # fmt: skip
    for name, make in queries.items():
        times = [t for _ in range(args.repeat) for t in timed(client, make(), 1)]
        times.sort()
        print(f"aggregates_api_{name}_p50: {statistics.median(times):.1f} ms")
        print(f"aggregates_api_{name}_p95: {times[int(len(times) * 0.95) - 1]:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
