"""Summary statistics of bucketed histograms: pure functions over (bucket bounds, counts).

Percentiles interpolate linearly inside the bucket where the rank falls, as telemetry.js did;
the last bucket is taken to be as wide as the one before it (Firefox's overflow bucket has no
upper bound). The regression hint compares consecutive medians with the standard error a
median has at that many submissions (large-sample formula, density read from the bucket).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (5, 25, 50, 75, 95)
#: How many standard errors apart two medians must be before the shift is flagged.
REGRESSION_Z = 3.0


def _upper(buckets: Sequence[int], index: int) -> float:
    if index + 1 < len(buckets):
        return float(buckets[index + 1])
    width = buckets[index] - buckets[index - 1] if index > 0 else 1
    return float(buckets[index] + max(width, 1))


def percentile(buckets: Sequence[int], counts: Sequence[float], p: float) -> float | None:
    total = sum(counts)
    if total <= 0:
        return None
    target = total * p / 100.0
    seen = 0.0
    for index, count in enumerate(counts):
        if count and seen + count >= target:
            low, high = float(buckets[index]), _upper(buckets, index)
            return low + (high - low) * (target - seen) / count
        seen += count
    return float(buckets[-1])


def percentiles(buckets: Sequence[int], counts: Sequence[float]) -> dict[str, float | None]:
    return {str(p): percentile(buckets, counts, p) for p in PERCENTILES}


def mean(buckets: Sequence[int], counts: Sequence[float], total: float) -> float | None:
    """The recorded values' mean: their sum over their number (None without values)."""
    values = sum(counts)
    if values <= 0:
        return None
    if total > 0:
        return total / values
    # no sums recorded (old clients): estimate from bucket midpoints
    return (
        sum(c * (buckets[i] + _upper(buckets, i)) / 2 for i, c in enumerate(counts) if c) / values
    )


def median_standard_error(
    buckets: Sequence[int], counts: Sequence[float], submissions: int
) -> float | None:
    """SE of the median with `submissions` independent clients: width / (2 p sqrt(n))."""
    total = sum(counts)
    if total <= 0 or submissions <= 0:
        return None
    target, seen = total / 2.0, 0.0
    for index, count in enumerate(counts):
        if count and seen + count >= target:
            width = _upper(buckets, index) - buckets[index]
            return width / (2.0 * (count / total) * math.sqrt(submissions))
        seen += count
    return None


def regression_hint(
    before: tuple[float | None, float | None], after: tuple[float | None, float | None]
) -> dict[str, float] | None:
    """(median, SE) of two consecutive points -> the shift when it is implausible, else None."""
    (m1, se1), (m2, se2) = before, after
    if None in (m1, se1, m2, se2):
        return None
    spread = math.sqrt(se1**2 + se2**2)
    shift = m2 - m1
    if shift == 0 or (spread > 0 and abs(shift) <= REGRESSION_Z * spread):
        return None
    return {"shift": shift, "z": min(abs(shift) / spread, 1e9) if spread > 0 else 1e9}
