"""One run of the aggregates job: decide which dates to (re)compute, compute, write the files.

A date is computed when its published objects changed since its aggregates were made (new
batches arrive under new object names, so a digest of names and sizes says), when it has no
aggregates yet, or when a rerun request covering it is newer than its aggregates. Every date
computed is written whole into the output directory (`days/<date>.json.gz`) together with the
updated `index.json`; the scheduler publishes both, replacing the previous files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aggregates.compute import aggregate_days
from aggregates.dayfile import INDEX_NAME, day_path, decode_index, encode_day
from pipeline.config import Settings
from pipeline.errors import ObjectNotFound
from pipeline.layout import InputFilter, list_matching
from pipeline.stores import open_store
from pipeline.stores.base import BlobStore, ObjectInfo
from pipeline.system_jobs import read_rerun_requests

log = logging.getLogger(__name__)


def source_digests(objects: Iterable[ObjectInfo]) -> dict[str, str]:
    """Submission date -> digest of the names and sizes of its published objects."""
    by_date: dict[str, list[str]] = {}
    for info in objects:
        date = info.key.rsplit("/", 1)[-1].split(".")[1]
        by_date.setdefault(date, []).append(f"{info.key}:{info.size}")
    return {
        date: hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:20]
        for date, keys in by_date.items()
    }


def dates_to_compute(
    sources: Mapping[str, str],
    index: Mapping[str, Any],
    requests: Iterable[Mapping[str, str]],
) -> list[str]:
    """Pure decision: which dates need (re)computing (see the module docstring)."""
    days = index.get("days", {})
    wanted = {
        date for date, digest in sources.items() if days.get(date, {}).get("source") != digest
    }
    for request in requests:
        candidates = set(sources) | set(days)
        for date in candidates:
            if request["first"] <= date <= request["last"]:
                if days.get(date, {}).get("computed_at", "") < request["requested_at"]:
                    wanted.add(date)
    return sorted(wanted)


def read_index(public: BlobStore, job_name: str) -> dict[str, Any]:
    try:
        return decode_index(public.get(f"{job_name}/data/{INDEX_NAME}"))
    except ObjectNotFound:
        return decode_index(None)


def utc_stamp(now: dt.datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run(
    settings: Settings,
    output_dir: Path,
    job_name: str,
    dates: list[str] | None = None,
    now: dt.datetime | None = None,
    **job_options: Any,
) -> list[str]:
    """Compute the pending dates (or exactly `dates`) into `output_dir`; returns the dates."""
    published = open_store(settings.published_url, endpoint_url=settings.s3_endpoint_url)
    public = open_store(settings.public_url, endpoint_url=settings.s3_endpoint_url)
    sources = source_digests(list_matching(published, InputFilter.everything()))
    index = read_index(public, job_name)
    if dates is None:
        dates = dates_to_compute(sources, index, read_rerun_requests(public, job_name))
    output_dir.mkdir(parents=True, exist_ok=True)  # empty when nothing is due: nothing replaced
    if not dates:
        log.info("aggregates are up to date (%d dates)", len(index["days"]))
        return []
    log.info("computing the aggregates of %d date(s): %s", len(dates), ", ".join(dates))
    computed = aggregate_days(settings, dates, **job_options)
    stamp = utc_stamp(now or dt.datetime.now(dt.UTC))
    (output_dir / "days").mkdir(exist_ok=True)
    for date in dates:
        day = computed[date]
        (output_dir / day_path(date)).write_bytes(encode_day(day, stamp))
        index["days"][date] = {
            "computed_at": stamp,
            "source": sources.get(date, ""),
            "rows": len(day.rows),
        }
        if day.skipped:
            log.info("%s: submissions of metrics left out: %s", date, day.skipped)
    (output_dir / INDEX_NAME).write_text(json.dumps(index, sort_keys=True, indent=1))
    return dates
