"""Generated published data for the aggregates tests, with the answer computed directly."""

from __future__ import annotations

import bisect
import gzip
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from hypothesis import strategies as st

from aggregates import jobrun
from aggregates.compute import DayAggregate
from aggregates.dayfile import day_path, encode_day
from histograms.buckets import exponential_buckets
from histograms.convert import convert_payload
from histograms.definitions import load_definitions
from launcher.demo import seed_revision
from mapreduce.synthetic import write_partition
from pipeline.stores import open_store
from pipeline.stores.base import BlobStore
from pipeline.system_jobs import AGGREGATES_JOB

REVISION = "https://hg.mozilla.org/mozilla-central/rev/00000000a66e"
HISTOGRAMS_JSON = {
    "GC_MS": {
        "kind": "exponential",
        "high": 10000,
        "n_buckets": 10,
        "description": "Time spent running JS GC (ms)",
    },
    "FLAG_ON": {"kind": "boolean", "description": "Whether the flag was on"},
    "PER_KEY": {
        "kind": "linear",
        "high": 10,
        "n_buckets": 5,
        "keyed": True,
        "description": "Something per key",
    },
}
LENGTHS = {"GC_MS": 10, "FLAG_ON": 3, "PER_KEY": 5}
SIMPLE_LAYOUT = exponential_buckets(1, 30000, 50)


def seed(cache_dir: str) -> None:
    seed_revision(cache_dir, REVISION, json.dumps(HISTOGRAMS_JSON).encode())


def counts_of(length: int):
    return st.lists(st.integers(0, 40), min_size=length, max_size=length)


record_strategy = st.fixed_dictionaries(
    {
        "v4": st.booleans(),
        "date": st.sampled_from(["20261201", "20261202"]),
        "channel": st.sampled_from(["release", "beta"]),
        "version": st.sampled_from(["23.0.1", "24.0"]),
        "build_id": st.sampled_from(["20261101000000", "20261102000000"]),
        "os": st.sampled_from(["WINNT", "Linux"]),
        "gc": counts_of(10),
        "flag": counts_of(3),
        "keyed": st.dictionaries(st.sampled_from(["a", "b"]), counts_of(5), max_size=2),
        "content_gc": st.one_of(st.none(), counts_of(10)),
        "uptime": st.integers(0, 100000),
    }
)


def compact(counts: list[int]) -> list[int]:
    total = sum(i * c for i, c in enumerate(counts))
    return [*counts, total, -1, -1, -1, -1]


def published_body(r: dict) -> dict:
    """The record as the converter would publish it."""
    if not r["v4"]:
        return {
            "ver": 2,
            "info": {"OS": r["os"], "version": "6.1", "arch": "x86", "revision": REVISION},
            "histograms": {
                "GC_MS": compact(r["gc"]),
                "FLAG_ON": compact(r["flag"]),
                "NOT_DEFINED": [1, 2, 3, 0, 0, 0, 0, 0],
            },
            "simpleMeasurements": {"uptime": r["uptime"], "js": {"nested": 1}},
        }
    processes = {}
    if r["content_gc"] is not None:
        processes = {"content": {"histograms": {"GC_MS": compact(r["content_gc"])}}}
    return {
        "type": "main",
        "application": {"architecture": "x86"},
        "environment": {"system": {"os": {"name": r["os"], "version": "6.1"}}},
        "payload": {
            "info": {"revision": REVISION},
            "histograms": {"GC_MS": compact(r["gc"]), "FLAG_ON": compact(r["flag"])},
            "keyedHistograms": {"PER_KEY": {k: compact(v) for k, v in r["keyed"].items()}},
            "processes": processes,
            "simpleMeasurements": {"uptime": r["uptime"]},
        },
    }


def publish(store: BlobStore, records: Iterable[dict], object_id: str = "obj") -> None:
    by_partition: dict[tuple, list] = {}
    for i, r in enumerate(records):
        key = (
            "main" if r["v4"] else "idle-daily",
            r["channel"],
            r["version"],
            r["build_id"],
            r["date"],
        )
        doc_id = f"00000000-0000-4000-8000-{i:012d}"
        by_partition.setdefault(key, []).append((doc_id, json.dumps(published_body(r))))
    for (reason, channel, version, build_id, date), lines in by_partition.items():
        dims = {
            "reason": reason,
            "appName": "Firefox",
            "appUpdateChannel": channel,
            "appVersion": version,
            "appBuildID": build_id,
            "submission_date": date,
        }
        write_partition(store, dims, object_id, lines)


def expected_rows(records: Iterable[dict]) -> dict[tuple, list]:
    """(date, channel, version, build_id, reason, os, metric) -> [submissions, sum, counts]."""
    out: dict[tuple, list] = {}

    def add(key: tuple, total: float, counts: list[int]) -> None:
        if key not in out:
            out[key] = [0, 0, [0] * len(counts)]
        entry = out[key]
        entry[0] += 1
        entry[1] += total
        entry[2] = [a + b for a, b in zip(entry[2], counts, strict=True)]

    for r in records:
        reason = "main" if r["v4"] else "idle_daily"  # the published path's sanitised value
        dims = (r["date"], r["channel"], r["version"], r["build_id"], reason, r["os"])
        add((*dims, "GC_MS"), compact(r["gc"])[10], r["gc"])
        add((*dims, "FLAG_ON"), compact(r["flag"])[3], r["flag"])
        simple = [0] * 50
        simple[max(0, bisect.bisect_right(SIMPLE_LAYOUT, r["uptime"]) - 1)] = 1
        add((*dims, "SIMPLE_MEASURES_UPTIME"), r["uptime"], simple)
        if r["v4"]:
            for key, counts in r["keyed"].items():
                add((*dims, f"PER_KEY[{key}]"), compact(counts)[5], counts)
            if r["content_gc"] is not None:
                add((*dims, "content/GC_MS"), compact(r["content_gc"])[10], r["content_gc"])
    return out


REVISION_DIR = "histograms/releases/mozilla-release/a55c55edf302"
FIREFOX23_DIMS = {
    "reason": "idle_daily",
    "appName": "Firefox",
    "appUpdateChannel": "release",
    "appVersion": "23.0.1",
    "appBuildID": "20130814063812",
    "submission_date": "20261201",
}


ESR_REVISION_PATH = "releases/mozilla-esr153/a9effd9e521653405f0ffd311e8edf90bde92237"


def seed_esr_revision(cache_dir: str, shared_fixtures: Path) -> Path:
    """The ESR 153 ping's revision served by the fixtures' modern Histograms.json (as the
    convert tests do: the exact file of that revision is not among the fixtures)."""
    target = Path(cache_dir) / ESR_REVISION_PATH / "Histograms.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(
        shared_fixtures / "histograms/enterprise-firefox-72a855fe/Histograms.json", target
    )
    return target


def publish_job_output(output: Path, public: BlobStore, job: str = AGGREGATES_JOB) -> None:
    """What the scheduler does after a successful run of the system job."""
    for path in output.rglob("*"):
        if path.is_file():
            public.put(f"{job}/data/{path.relative_to(output)}", path.read_bytes())


def publish_firefox23(settings, shared_fixtures: Path, tmp_path: Path) -> dict:
    """Convert the real Firefox 23 payload, publish it once on 20261201 and twice (another
    build) on 20261202, run the aggregates job and publish its output; returns the raw payload."""
    shutil.copytree(
        shared_fixtures / "histograms/releases",
        Path(settings.histogram_cache) / "releases",
        dirs_exist_ok=True,
    )
    body = (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
    raw = json.loads(gzip.decompress(body))
    definitions = load_definitions(shared_fixtures / REVISION_DIR / "Histograms.json")
    line = json.dumps(convert_payload(raw, definitions).payload)
    published = open_store(settings.published_url)
    write_partition(
        published, FIREFOX23_DIMS, "a", [("00000000-0000-4000-8000-000000000001", line)]
    )
    later = dict(FIREFOX23_DIMS, submission_date="20261202", appBuildID="20130815000000")
    write_partition(published, later, "b", [("00000000-0000-4000-8000-000000000002", line)])
    write_partition(published, later, "c", [("00000000-0000-4000-8000-000000000003", line)])
    output = tmp_path / "aggregates-output"
    assert jobrun.run(settings, output, AGGREGATES_JOB, mappers=1) == ["20261201", "20261202"]
    publish_job_output(output, open_store(settings.public_url))
    return raw


def publish_builds(settings, counts_by_build: dict[str, tuple[int, list[int]]]) -> None:
    """Day files (published as the system job would) of one metric PAGE_LOAD_MS on nightly with the given (submissions, counts) per build ID."""
    day = DayAggregate("20261201")
    layout = day.layout_id("linear", tuple(range(0, 200, 10)))
    for build, (submissions, counts) in counts_by_build.items():
        dims = ("nightly", "150.0a1", build, "main", "Firefox", "Linux", "6.1", "x86-64")
        day.rows[(*dims, "PAGE_LOAD_MS", layout)] = [submissions, 0, *counts]
    public = open_store(settings.public_url)
    public.put(
        f"{AGGREGATES_JOB}/data/{day_path(day.date)}", encode_day(day, "2026-12-02T01:00:00Z")
    )
    index = {"format": 1, "days": {day.date: {"computed_at": "2026-12-02T01:00:00Z"}}}
    public.put(f"{AGGREGATES_JOB}/data/index.json", json.dumps(index).encode())
