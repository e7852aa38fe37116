"""Bucket layouts exactly as Firefox computes them.

Firefox (like the Chromium histogram code it inherited) stores a histogram as counts per bucket
and sends each bucket's lower bound. To turn those into the compact array we must know the
complete list of lower bounds, which depends only on (kind, low, high, bucket_count). These
functions reproduce Firefox's arithmetic, including the rounding of exponential buckets, so
that every lower bound a real client sends is found in our layout.

Every layout starts with the underflow bucket 0; `bucket_count` includes it.
"""

from __future__ import annotations

import math

#: `histogram_type` codes as they appear in payloads (and `kind` in the reference files).
KIND_CODES: dict[str, int] = {
    "exponential": 0,
    "linear": 1,
    "boolean": 2,
    "flag": 3,
    "count": 4,
    "enumerated": 1,  # Firefox stores enumerated histograms as linear ones
    "categorical": 5,
}

#: Categorical histograms get at least this many buckets so labels can be added later.
MIN_CATEGORICAL_BUCKETS = 50


def exponential_buckets(low: int, high: int, bucket_count: int) -> tuple[int, ...]:
    """Log-spaced lower bounds: each step aims at an equal share of the remaining log range.

    The next bound is `floor(exp(log(current) + ratio) + 0.5)`; when rounding would not move
    forward the bound grows by one instead, which is why small ranges become linear at the start.
    """
    bounds = [0] * bucket_count
    current = low
    bounds[1] = current
    log_high = math.log(high)
    for index in range(2, bucket_count):
        log_current = math.log(current)
        log_next = log_current + (log_high - log_current) / (bucket_count - index)
        candidate = int(math.floor(math.exp(log_next) + 0.5))
        current = candidate if candidate > current else current + 1
        bounds[index] = current
    return tuple(bounds)


def linear_buckets(low: int, high: int, bucket_count: int) -> tuple[int, ...]:
    """Evenly spaced lower bounds between low and high, rounded half up as Firefox does."""
    bounds = [0] * bucket_count
    low_f, high_f = float(low), float(high)
    for index in range(1, bucket_count):
        value = (low_f * (bucket_count - 1 - index) + high_f * (index - 1)) / (bucket_count - 2)
        bounds[index] = int(value + 0.5)
    return tuple(bounds)


def layout_for(kind: str, low: int, high: int, bucket_count: int) -> tuple[int, ...]:
    """Lower bounds for a histogram of `kind` (a Histograms.json kind name)."""
    if kind == "exponential":
        return exponential_buckets(low, high, bucket_count)
    if kind in KIND_CODES:
        return linear_buckets(low, high, bucket_count)
    raise ValueError(f"unknown histogram kind {kind!r}")


def parameters_for(
    kind: str,
    definition: dict,
    n_values: int | None,
    low: int,
    high: int | None,
    n_buckets: int | None,
) -> tuple[int, int, int]:
    """(low, high, bucket_count) the way Firefox derives them for each kind.

    `definition` is only consulted for categorical labels; numeric fields arrive already
    evaluated (they may have been C++ expressions in the file).
    """
    if kind in ("boolean", "flag", "count"):
        return 1, 2, 3
    if kind == "enumerated":
        if n_values is None:
            raise ValueError("enumerated histogram needs n_values")
        if n_values < 2:  # (1, 1, 2) would divide by zero in the linear layout
            raise ValueError(f"n_values must be at least 2, got {n_values}")
        return 1, n_values, n_values + 1
    if kind == "categorical":
        labels = definition.get("labels")
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(x, str) for x in labels)
        ):
            raise ValueError("categorical histogram needs a non-empty list of string labels")
        values = max(len(labels), n_values or 0, MIN_CATEGORICAL_BUCKETS)
        return 1, values, values + 1
    if kind in ("exponential", "linear"):
        if high is None or n_buckets is None:
            raise ValueError(f"{kind} histogram needs high and n_buckets")
        low = max(low, 1)  # Firefox clamps the minimum to 1
        if high <= low:
            raise ValueError(f"high ({high}) must be greater than low ({low})")
        if n_buckets < 3:
            raise ValueError(f"n_buckets must be at least 3, got {n_buckets}")
        return low, high, n_buckets
    raise ValueError(f"unknown kind {kind!r}")
