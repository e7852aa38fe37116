"""Definitions a payload declares itself, for when its revision's Histograms.json is out of reach.

Every histogram Firefox sends states its own layout: `histogram_type` (0 exponential,
1 linear, 2 boolean, 3 flag, 4 count, 5 categorical), `range` ([low, high]) and `bucket_count`,
in v4 pings as in the 2013 v1 payloads. When the revision cannot be fetched, convert builds
definitions from those declarations and converts with them, so the data is published (marked
as converted from the payload's own declarations) instead of held back; it is re-validated
against the real Histograms.json once that can be had.

A declaration is only taken when it describes a layout Firefox could have made (the same
parameter rules as a Histograms.json entry), and the payload's declared layouts together may
ask for at most `MAX_DECLARED_BUCKETS` bucket bounds, so a hostile payload cannot make the
worker compute millions of layouts. A histogram without a usable declaration is left out and
listed, as a histogram its revision does not define would be.

For a name, the first declaration met wins (top-level before process sections, the first key
of a keyed histogram); a later copy that declares otherwise is invalid, exactly as it would be
against a Histograms.json entry.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from histograms.buckets import layout_for
from histograms.definitions import Definitions, HistogramDefinition

#: histogram_type codes as payloads carry them -> Histograms.json kind names.
KIND_NAMES = {0: "exponential", 1: "linear", 2: "boolean", 3: "flag", 4: "count", 5: "categorical"}
MAX_DECLARED_BUCKET_COUNT = 10_001
MAX_DECLARED_BUCKETS = 2_000_000
_FIXED = {"boolean", "flag", "count"}


def definitions_from_payload(payload: Mapping[str, Any]) -> Definitions:
    """Definitions for every histogram whose declaration is usable; problems in `.errors`."""
    found: dict[str, HistogramDefinition] = {}
    errors: list[tuple[str, str]] = []
    budget = MAX_DECLARED_BUCKETS
    for name, hist, keyed in _declarations(payload):
        if name in found or not isinstance(name, str):
            continue
        try:
            definition = _declared(name, hist, keyed)
        except ValueError as exc:
            errors.append((name, str(exc)))
            continue
        budget -= definition.bucket_count
        if budget < 0:
            errors.append((name, "the payload declares too many bucket layouts"))
            break
        found[name] = definition
    return Definitions(found, errors)


def _declarations(payload: Mapping[str, Any]) -> Iterator[tuple[object, object, bool]]:
    """(name, one histogram object, keyed) for every histogram a v1 or v4 payload carries."""
    sections: list[tuple[object, bool]] = []
    inner = payload.get("payload")
    if isinstance(inner, Mapping):
        sections += [(inner.get("histograms"), False), (inner.get("keyedHistograms"), True)]
        processes = inner.get("processes")
        if isinstance(processes, Mapping):
            for process in processes.values():
                if isinstance(process, Mapping):
                    sections.append((process.get("histograms"), False))
                    sections.append((process.get("keyedHistograms"), True))
    else:
        sections.append((payload.get("histograms"), False))
    for section, keyed in sections:
        if not isinstance(section, Mapping):
            continue
        for name, value in section.items():
            if keyed:
                if isinstance(value, Mapping) and value:
                    yield name, next(iter(value.values())), True
            else:
                yield name, value, False


def _declared(name: str, hist: object, keyed: bool) -> HistogramDefinition:
    if not isinstance(hist, Mapping):
        raise ValueError("histogram is not a JSON object")
    code, bounds, count = hist.get("histogram_type"), hist.get("range"), hist.get("bucket_count")
    if type(code) is not int or code not in KIND_NAMES:
        raise ValueError(f"no usable histogram_type ({code!r})")
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(type(b) is int for b in bounds)
        or type(count) is not int
    ):
        raise ValueError("no usable range and bucket_count")
    kind, (low, high) = KIND_NAMES[code], bounds
    if kind in _FIXED:
        if (low, high, count) != (1, 2, 3):
            raise ValueError(f"a {kind} histogram has range [1, 2] and 3 buckets")
    elif not (1 <= low < high < 2**62 and 3 <= count <= MAX_DECLARED_BUCKET_COUNT):
        raise ValueError(f"range {bounds} with {count} buckets is not a layout Firefox makes")
    return HistogramDefinition(
        name=name,
        kind=kind,
        low=low,
        high=high,
        bucket_count=count,
        keyed=keyed,
        buckets=_layout(kind, low, high, count),
    )


@functools.lru_cache(maxsize=1024)
def _layout(kind: str, low: int, high: int, count: int) -> tuple[int, ...]:
    return layout_for(kind, low, high, count)
