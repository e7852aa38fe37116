"""From one published record to what the aggregates sum: pure functions, no I/O.

A published record is a converted payload (histograms already in the compact form
``[count_0 .. count_{n-1}, sum, log_sum, log_sum_squares, sum_squares_lo, sum_squares_hi]``).
Each metric becomes one *vector* ``[submissions, sum, count_0 .. count_{n-1}]`` so that adding
vectors elementwise aggregates everything at once. Metric names follow the converter's
qualification: ``NAME`` (parent/top level), ``<process>/NAME`` (child processes),
``NAME[key]`` (one key of a keyed histogram), and ``SIMPLE_MEASURES_<NAME>`` for the numeric
simple measurements, which the 2014 dashboards showed as histograms too.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from typing import Any

from histograms.buckets import exponential_buckets

STATISTICS = 5  # trailing statistics in a compact histogram
SIMPLE_PREFIX = "SIMPLE_MEASURES_"
#: One fixed layout for every simple measure (milliseconds, counts, bytes alike).
SIMPLE_LOW, SIMPLE_HIGH, SIMPLE_BUCKETS = 1, 30000, 50
SIMPLE_LAYOUT: tuple[int, ...] = exponential_buckets(SIMPLE_LOW, SIMPLE_HIGH, SIMPLE_BUCKETS)
SIMPLE_KIND = "exponential"
OTHER_PROCESS_PARENT = "parent"

#: Dimensions of a group besides the submission date and revision, in key order.
GROUP_DIMENSIONS = (
    "channel",
    "version",
    "build_id",
    "reason",
    "application",
    "os",
    "os_version",
    "architecture",
)
UNKNOWN = "UNKNOWN"


def _text(value: Any) -> str:
    if value is None or value == "":
        return UNKNOWN
    return str(value)[:100]


def record_dimensions(record: Mapping[str, Any], path_dims: list[str]) -> tuple[str, ...]:
    """(channel, version, build_id, reason, application, os, os_version, architecture).

    The first five come from the published path (already sanitised against the schema); the
    system dimensions from the payload: `info` in v1 records, `environment`/`application` in v4.
    """
    reason, app, channel, version, build_id = path_dims[:5]
    info = record.get("info")
    if isinstance(record.get("payload"), dict):
        environment = record.get("environment") or {}
        system = environment.get("system") if isinstance(environment, dict) else None
        os_info = (system or {}).get("os") if isinstance(system, dict) else None
        os_info = os_info if isinstance(os_info, dict) else {}
        application = record.get("application")
        arch = application.get("architecture") if isinstance(application, dict) else None
        os_name, os_version = os_info.get("name"), os_info.get("version")
    elif isinstance(info, dict):
        os_name, os_version, arch = info.get("OS"), info.get("version"), info.get("arch")
    else:
        os_name = os_version = arch = None
    return (
        channel,
        version,
        build_id,
        reason,
        app,
        _text(os_name),
        _text(os_version),
        _text(arch),
    )


def histogram_vector(compact: list) -> list[int] | None:
    """``[1, sum, counts...]`` of one compact histogram, None when it is not one."""
    if not isinstance(compact, list) or len(compact) <= STATISTICS:
        return None
    total = compact[-STATISTICS]
    vector = [1, total if isinstance(total, int | float) and total >= 0 else 0]
    vector.extend(compact[:-STATISTICS])
    return vector


def simple_vector(value: int | float) -> list:
    """A simple measure as a one-submission histogram in SIMPLE_LAYOUT."""
    vector = [1, value] + [0] * SIMPLE_BUCKETS
    index = max(0, bisect.bisect_right(SIMPLE_LAYOUT, value) - 1)
    vector[2 + index] = 1
    return vector


def _plain(section: Any, prefix: str) -> Iterator[tuple[str, list]]:
    if isinstance(section, dict):
        for name, compact in section.items():
            vector = histogram_vector(compact)
            if vector is not None:
                yield prefix + name, vector


def _keyed(section: Any, prefix: str) -> Iterator[tuple[str, list]]:
    if isinstance(section, dict):
        for name, by_key in section.items():
            if isinstance(by_key, dict):
                for key, compact in by_key.items():
                    vector = histogram_vector(compact)
                    if vector is not None:
                        yield f"{prefix}{name}[{key}]", vector


def _simple(section: Any) -> Iterator[tuple[str, list]]:
    if isinstance(section, dict):
        for name, value in section.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                yield SIMPLE_PREFIX + name.upper(), simple_vector(value)


def record_metrics(record: Mapping[str, Any]) -> Iterator[tuple[str, list]]:
    """Every (metric name, vector) of one published record, v1 and v4 alike."""
    inner = record.get("payload")
    if isinstance(inner, dict):
        yield from _plain(inner.get("histograms"), "")
        yield from _keyed(inner.get("keyedHistograms"), "")
        processes = inner.get("processes")
        if isinstance(processes, dict):
            for process, section in processes.items():
                if not isinstance(section, dict):
                    continue
                prefix = "" if process == OTHER_PROCESS_PARENT else f"{process}/"
                yield from _plain(section.get("histograms"), prefix)
                yield from _keyed(section.get("keyedHistograms"), prefix)
        yield from _simple(inner.get("simpleMeasurements"))
    else:
        yield from _plain(record.get("histograms"), "")
        yield from _simple(record.get("simpleMeasurements"))


def revision_of(record: Mapping[str, Any]) -> str:
    """The Histograms.json revision a record's layouts belong to ('' when it names none)."""
    from histograms.convert import revision_of as _revision_of

    return _revision_of(dict(record)) or ""


def base_name(metric: str) -> str:
    """The Histograms.json name behind a qualified metric (`content/X[key]` -> `X`)."""
    name = metric.rsplit("/", 1)[-1] if "/" in metric.split("[", 1)[0] else metric
    return name.split("[", 1)[0]


def add_vectors(vectors: list[list]) -> list:
    """Elementwise sum of equally long vectors (columns summed in C through zip)."""
    if len(vectors) == 1:
        return vectors[0]
    return [sum(column) for column in zip(*vectors, strict=True)]


def merge_metric_maps(maps: Iterator[Mapping[str, list]]) -> dict[str, list]:
    """Sum many {metric: vector} maps; vectors of another length than the first are dropped
    into `<metric>#<length>` so that a changed layout never mixes with the old one."""
    collected: dict[str, list[list]] = {}
    for metrics in maps:
        for name, vector in metrics.items():
            bucket = collected.get(name)
            if bucket is None:
                collected[name] = [vector]
            elif len(bucket[0]) == len(vector):
                bucket.append(vector)
            else:
                collected.setdefault(f"{name}#{len(vector)}", []).append(vector)
    return {name: add_vectors(vectors) for name, vectors in collected.items()}
