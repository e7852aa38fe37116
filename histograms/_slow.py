"""Pure-Python twin of `_fast.pyx`: identical results and identical reasons, only slower.

It exists so the package works without a C compiler and so the property test can hold the
Cython code to a readable reference. Keep the two in step: same checks, same order, same text.

`convert_one(hist, spec)` returns the compact list, or a `str` reason when the histogram is
invalid (a return value, not an exception, because invalid histograms are ordinary data).
"""

from __future__ import annotations

from histograms.spec import STATS, flexible_spec

STARTUP_PREFIX = "STARTUP_"


def convert_one(hist: object, spec: tuple) -> list | str:
    if type(hist) is not dict:
        return "histogram is not a JSON object"
    kind_code, low, high, bucket_count, index, flexible, keyed, _bounds = spec
    declared_count = hist.get("bucket_count")
    declared_range = hist.get("range")
    if flexible and (declared_count != bucket_count or declared_range != [low, high]):
        alternative = flexible_spec(hist)
        if alternative is not None:
            kind_code, low, high, bucket_count, index, flexible, keyed, _bounds = alternative
    declared_type = hist.get("histogram_type")
    if declared_type is not None and declared_type != kind_code:
        return f"histogram_type {declared_type!r} contradicts the definition (expected {kind_code})"
    if declared_count is not None and declared_count != bucket_count:
        return (
            f"bucket_count {declared_count!r} contradicts the definition (expected {bucket_count})"
        )
    if declared_range is not None:
        if type(declared_range) is not list or len(declared_range) != 2:
            return f"range {declared_range!r} is not a [low, high] pair"
        if declared_range[0] != low or declared_range[1] != high:
            return f"range {declared_range!r} contradicts the definition (expected [{low}, {high}])"
    values = hist.get("values")
    if type(values) is not dict:
        return "values is missing or not a JSON object"
    out = [0] * (bucket_count + 5)
    for key, count in values.items():
        position = index.get(key)
        if position is None:
            return f"bucket lower bound {key!r} is not in the layout"
        if type(count) is not int or count < 0:
            return f"count {count!r} for bucket {key!r} is not a non-negative integer"
        out[position] = count
    position = bucket_count
    for name in STATS:
        value = hist.get(name)
        if value is None:
            out[position] = -1
        elif type(value) is int or type(value) is float:
            out[position] = value
        else:
            return f"{name} {value!r} is not a number"
        position += 1
    return out


def convert_histograms(histograms: object, specs: dict) -> tuple[dict, list, list]:
    """Convert a name -> histogram object; returns (converted, invalid, unknown)."""
    converted: dict = {}
    invalid: list = []
    unknown: list = []
    if type(histograms) is not dict:
        return converted, [("*", "histograms is not a JSON object")], unknown
    for name, hist in histograms.items():
        spec = specs.get(name)
        if spec is None and type(name) is str and name.startswith(STARTUP_PREFIX):
            spec = specs.get(name[len(STARTUP_PREFIX) :])
        if spec is None:
            unknown.append(name)
            continue
        if spec[6]:
            invalid.append((name, "defined as keyed but sent as a plain histogram"))
            continue
        result = convert_one(hist, spec)
        if type(result) is str:
            invalid.append((name, result))
        else:
            converted[name] = result
    return converted, invalid, unknown
