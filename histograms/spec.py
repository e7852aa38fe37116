"""Conversion specs: the per-histogram facts the hot loop needs, in the cheapest shape.

A spec is a plain tuple `(kind_code, low, high, bucket_count, index, flexible, keyed, bounds)`. `index` maps
each bucket lower bound to its position, under both its decimal string (as JSON object keys
arrive) and its int, so the hot loop needs one dict lookup per bucket and never parses
numbers. `flexible` marks enumerated histograms whose size came from a C++ constant whose value
changed between versions: for those, a client-reported layout that is itself a valid
enumerated layout is accepted (see `flexible_spec`). `bounds` is the layout as a C array
(`array('q')`) for the Cython loop, which parses decimal keys itself and binary-searches them:
a dict lookup with string keys was most of its cost.
"""

from __future__ import annotations

import functools
from array import array

from histograms.buckets import KIND_CODES, linear_buckets
from histograms.definitions import HistogramDefinition

#: Statistics appended after the counts, in this order; missing ones become -1.
STATS = ("sum", "log_sum", "log_sum_squares", "sum_squares_lo", "sum_squares_hi")

#: Largest enumerated layout accepted from a client for a `flexible` definition.
MAX_FLEXIBLE_VALUES = 10_000

Spec = tuple


def _index_for(buckets: tuple[int, ...]) -> dict:
    index: dict = {}
    for position, bound in enumerate(buckets):
        index[bound] = position
        index[str(bound)] = position
    return index


def make_spec(
    kind_code: int,
    low: int,
    high: int,
    bucket_count: int,
    buckets: tuple[int, ...],
    flexible: bool,
    keyed: bool = False,
) -> Spec:
    bounds = array("q", buckets) if buckets and max(buckets) < 2**63 else None
    return (kind_code, low, high, bucket_count, _index_for(buckets), flexible, keyed, bounds)


def build_spec(definition: HistogramDefinition) -> Spec:
    flexible = definition.symbolic and definition.kind == "enumerated"
    return make_spec(
        definition.kind_code,
        definition.low,
        definition.high,
        definition.bucket_count,
        definition.buckets,
        flexible,
        definition.keyed,
    )


@functools.lru_cache(maxsize=256)
def _enumerated_spec(n_values: int) -> Spec:
    return make_spec(
        KIND_CODES["enumerated"],
        1,
        n_values,
        n_values + 1,
        linear_buckets(1, n_values, n_values + 1),
        True,
    )


def flexible_spec(hist: dict) -> Spec | None:
    """The enumerated spec a client's own header describes, or None if it is not one.

    Used only for `flexible` definitions; both implementations call this same function so they
    accept and reject exactly the same histograms.
    """
    bucket_count = hist.get("bucket_count")
    bounds = hist.get("range")
    if type(bucket_count) is not int or not 3 <= bucket_count <= MAX_FLEXIBLE_VALUES + 1:
        return None
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or bounds[0] != 1
        or bounds[1] != bucket_count - 1
    ):
        return None
    return _enumerated_spec(bucket_count - 1)
