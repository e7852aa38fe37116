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
from array import array
from collections.abc import Iterator, Mapping
from typing import Any

from histograms.buckets import exponential_buckets
from histograms.convert import revision_of as _revision_of

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


def _plain(section: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(section, dict):
        if prefix:
            for name, compact in section.items():
                out[prefix + name] = compact
        else:
            out.update(section)


def _keyed(section: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(section, dict):
        for name, by_key in section.items():
            if isinstance(by_key, dict):
                for key, compact in by_key.items():
                    out[f"{prefix}{name}[{key}]"] = compact


def _simple(section: Any) -> dict[str, Any]:
    if not isinstance(section, dict):
        return {}
    return {
        SIMPLE_PREFIX + name.upper(): value
        for name, value in section.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    }


def record_sections(record: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """({metric: compact histogram}, {metric: simple measure value}) of one published record.

    Nothing is copied or checked here (the mapper's hot path): `merge_metric_maps` validates
    while it sums, and skips what is not a compact histogram.
    """
    inner = record.get("payload")
    if isinstance(inner, dict):
        compact: dict[str, Any] = {}
        _plain(inner.get("histograms"), "", compact)
        _keyed(inner.get("keyedHistograms"), "", compact)
        processes = inner.get("processes")
        if isinstance(processes, dict):
            for process, section in processes.items():
                if not isinstance(section, dict):
                    continue
                prefix = "" if process == OTHER_PROCESS_PARENT else f"{process}/"
                _plain(section.get("histograms"), prefix, compact)
                _keyed(section.get("keyedHistograms"), prefix, compact)
        return compact, _simple(inner.get("simpleMeasurements"))
    histograms = record.get("histograms")
    return (histograms if isinstance(histograms, dict) else {}), _simple(
        record.get("simpleMeasurements")
    )


def simple_vector(values: list) -> list:
    """Simple measures of several submissions as `[n, sum, counts...]` in SIMPLE_LAYOUT."""
    counts = [0] * SIMPLE_BUCKETS
    for value in values:
        counts[max(0, bisect.bisect_right(SIMPLE_LAYOUT, value) - 1)] += 1
    return [len(values), sum(values), *counts]


def _is_compact(compact: Any) -> bool:
    return (
        type(compact) is list
        and len(compact) > STATISTICS
        and all(type(x) is int or type(x) is float for x in compact)
    )


def compact_vectors(arrays: list) -> list[list]:
    """Compact histograms of one metric -> `[n, sum, counts...]` per layout (array length).

    The common case (all valid, one length) is summed column by column in C; anything else
    takes the slow path that drops what is not a compact histogram and splits by length.
    """
    try:
        columns = [sum(column) for column in zip(*arrays, strict=True)]
        if len(columns) > STATISTICS:
            total = sum(a[-STATISTICS] for a in arrays if a[-STATISTICS] > 0)
            return [[len(arrays), total, *columns[:-STATISTICS]]]
    except (TypeError, ValueError):
        pass
    by_length: dict[int, list] = {}
    for compact in arrays:
        if _is_compact(compact):
            by_length.setdefault(len(compact), []).append(compact)
    if len(by_length) == 1 and len(next(iter(by_length.values()))) == len(arrays):
        return []  # all valid and one length, yet failed above: nothing sensible to add
    return [vector for group in by_length.values() for vector in compact_vectors(group)]


def revision_of(record: dict[str, Any]) -> str:
    """The Histograms.json revision a record's layouts belong to ('' when it names none)."""
    return _revision_of(record) or ""


def base_name(metric: str) -> str:
    """The Histograms.json name behind a qualified metric (`content/X[key]` -> `X`); keys may
    hold any character, so only the part before `[` is looked at."""
    return metric.split("[", 1)[0].rsplit("/", 1)[-1]


def add_vectors(vectors: list[list]) -> list:
    """Elementwise sum of equally long vectors (columns summed in C through zip)."""
    if len(vectors) == 1:
        return vectors[0]
    return [sum(column) for column in zip(*vectors, strict=True)]


def _number(value: float) -> int | float:
    """The scanner sums in doubles: whole numbers go back to int, as the general path has them."""
    return int(value) if value.is_integer() else value


def _add_into(total: array, other: array) -> None:
    """total += other elementwise (the pure-Python stand-in of the scanner's add_into)."""
    if len(total) != len(other):
        raise ValueError("arrays of different lengths")
    for index, value in enumerate(other):
        total[index] += value


try:
    from aggregates._scan import add_into
except ImportError:  # not built: ("b", ...) values are never produced then anyway
    add_into = _add_into


def merge_metric_maps(values: Iterator[tuple]) -> tuple[str, dict[str, list]]:
    """Sum map values — `("r", compact, simple)` of one record, `("b", (names, lengths),
    array, simple)` of one record read by the native scanner, or `("m", {metric: vector})`
    already merged — into one `("m", {metric: [submissions, sum, counts...]})`.

    Arrays of another length than the metric's first are kept apart as `<metric>#<length>`,
    so a changed layout never mixes with the old one; anything that is not a compact
    histogram is left out.
    """
    raw: dict[str, list] = {}
    simple: dict[str, list] = {}
    merged: dict[str, list[list]] = {}
    scanned: dict[tuple, list] = {}  # (names, lengths) -> [records, summed array]
    for value in values:
        if value[0] == "r":
            for name, compact in value[1].items():
                arrays = raw.get(name)
                if arrays is None:
                    raw[name] = [compact]
                else:
                    arrays.append(compact)
            for name, number in value[2].items():
                simple.setdefault(name, []).append(number)
        elif value[0] == "b":
            signature, values_array, numbers = value[1], value[2], value[3]
            entry = scanned.get(signature)
            if entry is None:
                scanned[signature] = [1, array("d", values_array)]
            else:
                entry[0] += 1
                add_into(entry[1], values_array)
            for name, number in numbers.items():
                simple.setdefault(name, []).append(number)
        else:
            for name, vector in value[1].items():
                merged.setdefault(name, []).append(vector)
    for (names, lengths), (submissions, total) in scanned.items():
        offset = 0
        for name, length in zip(names, lengths, strict=True):
            vector = [submissions, _number(total[offset + length])]
            vector.extend(_number(x) for x in total[offset : offset + length])
            merged.setdefault(f"{name}#{length + 2}", []).append(vector)
            offset += length + 1
    for name, arrays in raw.items():
        for vector in compact_vectors(arrays):
            merged.setdefault(f"{name}#{len(vector)}", []).append(vector)
    for name, numbers in simple.items():
        merged.setdefault(f"{name}#{SIMPLE_BUCKETS + 2}", []).append(simple_vector(numbers))
    out: dict[str, list] = {}
    for qualified, vectors in merged.items():
        name = qualified.rsplit("#", 1)[0]
        for vector in vectors:
            key = f"{name}#{len(vector)}"
            existing = out.get(key)
            out[key] = vector if existing is None else add_vectors([existing, vector])
    return "m", out
