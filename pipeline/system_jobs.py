"""Names shared by the system jobs and the services around them (one home for each).

The aggregates behind the /telemetry dashboards are computed by a scheduled job like any other
(so its runs and logs show on the dashboard), created by the scheduler under a fixed name. A
rerun of a date range is asked for by leaving a request object in the public store beside the
job's output (never under `data/`, so it is not published) and queueing a run; the job
recomputes every requested date whose aggregates are older than the request.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from pipeline.stores.base import BlobStore

AGGREGATES_JOB = "telemetry-aggregates"
AGGREGATES_OWNER = "system@localhost"
AGGREGATES_COMMAND = 'python -m aggregates job --output-dir "$OUTPUT_DIR"'
AGGREGATES_HOUR = 1  # UTC: yesterday is complete by then
DATE = re.compile(r"^\d{8}\Z")


def rerun_prefix(job_name: str = AGGREGATES_JOB) -> str:
    return f"{job_name}/rerun-requests/"


def check_date(value: str) -> str:
    """YYYYMMDD or YYYY-MM-DD -> YYYYMMDD; ValueError with a clear message otherwise."""
    compact = value.replace("-", "")
    if not DATE.match(compact):
        raise ValueError(f"not a date (YYYYMMDD or YYYY-MM-DD): {value!r}")
    try:
        dt.datetime.strptime(compact, "%Y%m%d")
    except ValueError:
        raise ValueError(f"not a calendar date: {value!r}") from None
    return compact


def date_range(first: str, last: str) -> list[str]:
    """Every date from `first` to `last` inclusive, as YYYYMMDD (ValueError when reversed)."""
    start = dt.datetime.strptime(check_date(first), "%Y%m%d")
    end = dt.datetime.strptime(check_date(last), "%Y%m%d")
    if end < start:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    return [
        (start + dt.timedelta(days=i)).strftime("%Y%m%d") for i in range((end - start).days + 1)
    ]


def write_rerun_request(
    public: BlobStore, first: str, last: str, now: dt.datetime, job_name: str = AGGREGATES_JOB
) -> str:
    """Store a request to recompute `first`..`last` (inclusive); returns its key."""
    first, last = check_date(first), check_date(last)
    if first > last:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    key = f"{rerun_prefix(job_name)}{stamp}-{first}-{last}.json"
    body = {"first": first, "last": last, "requested_at": stamp}
    public.put(key, json.dumps(body).encode())
    return key


def read_rerun_requests(public: BlobStore, job_name: str = AGGREGATES_JOB) -> list[dict[str, Any]]:
    """Every stored request, oldest first (unreadable ones are skipped)."""
    requests = []
    for info in public.list(rerun_prefix(job_name)):
        try:
            body = json.loads(public.get(info.key))
            requests.append(
                {
                    "first": check_date(body["first"]),
                    "last": check_date(body["last"]),
                    "requested_at": str(body["requested_at"]),
                }
            )
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(requests, key=lambda r: r["requested_at"])
