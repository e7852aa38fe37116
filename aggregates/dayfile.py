"""The published form of one submission date's aggregates, and the index over all dates.

``days/<YYYYMMDD>.json.gz`` (gzip JSON; a day of real data compresses about 20:1)::

    {"format": 1, "date": "20261206", "computed_at": "2026-12-06T12:00:03Z",
     "dimensions": ["channel", "version", "build_id", "reason", "application", "os",
                    "os_version", "architecture"],
     "layouts": [{"kind": "exponential", "buckets": [0, 1, 2, ...]}, ...],
     "descriptions": {"GC_MS": "Time spent running JS GC (ms)", ...},
     "skipped": {"not in its revision's Histograms.json": 3},
     "rows": [[<dimension values...>, metric, layout index, submissions, sum, [counts...]], ...]}

``index.json``: ``{"format": 1, "days": {"20261206": {"computed_at": ..., "source": <digest of
the published objects it was computed from>, "rows": n}}}``. A day is replaced as a whole, so
redoing a date overwrites its file and its index entry.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

from aggregates.compute import DayAggregate
from aggregates.extract import GROUP_DIMENSIONS

FORMAT = 1
INDEX_NAME = "index.json"


def day_path(date: str) -> str:
    return f"days/{date}.json.gz"


def encode_day(day: DayAggregate, computed_at: str) -> bytes:
    rows = [
        [*key[:-2], key[-2], key[-1], vector[0], vector[1], vector[2:]]
        for key, vector in sorted(day.rows.items())
    ]
    document = {
        "format": FORMAT,
        "date": day.date,
        "computed_at": computed_at,
        "dimensions": list(GROUP_DIMENSIONS),
        "layouts": [{"kind": lay.kind, "buckets": list(lay.buckets)} for lay in day.layouts],
        "descriptions": day.descriptions,
        "skipped": day.skipped,
        "rows": rows,
    }
    return gzip.compress(json.dumps(document, separators=(",", ":")).encode(), mtime=0)


def decode_day(data: bytes) -> dict[str, Any]:
    document = json.loads(gzip.decompress(data))
    if document.get("format") != FORMAT:
        raise ValueError(f"unknown aggregates day file format {document.get('format')!r}")
    return document


def iter_rows(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The rows of a decoded day file as dicts (tests and tools; the cache reads lists)."""
    dims = document["dimensions"]
    for row in document["rows"]:
        values = dict(zip(dims, row, strict=False))
        metric, layout, submissions, total, counts = row[len(dims) :]
        values.update(
            metric=metric,
            layout=document["layouts"][layout],
            submissions=submissions,
            sum=total,
            counts=counts,
        )
        yield values


def empty_index() -> dict[str, Any]:
    return {"format": FORMAT, "days": {}}


def decode_index(data: bytes | None) -> dict[str, Any]:
    if not data:
        return empty_index()
    index = json.loads(data)
    if not isinstance(index, dict) or not isinstance(index.get("days"), dict):
        raise ValueError("aggregates index.json is not {'format': 1, 'days': {...}}")
    return index
