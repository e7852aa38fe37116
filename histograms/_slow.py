"""Pure-Python twin of `_fast.pyx`: identical results and identical reasons, only slower.

It exists so the package works without a C compiler and so the property test can hold the
Cython code to a readable reference. Keep the two in step: same checks, same order, same text.

`convert_one(hist, spec)` returns the compact list, or a `str` reason when the histogram is
invalid (a return value, not an exception, because invalid histograms are ordinary data).
"""

from __future__ import annotations

import json

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


# -- Straight from the JSON text (twin of `Section`, `parse_section`, `member_start` and
# `plain_members_after` in `_fast.pyx`). The compiled code reads the section without building
# its dicts; this reference parses it with `loads` and converts the dicts, which is what the
# compiled result must always equal.

_DECODER = json.JSONDecoder()
_WS = b" \t\n\r"


def _plain_key(text: str) -> bool:
    return all(32 <= ord(c) < 127 and c not in '"\\' for c in text)


def _value_end(data: bytes, position: int) -> int | None:
    """End of the JSON value at `position` (Python's own decoder finds it), or None."""
    try:
        text = data[position:].decode("utf-8")
        _, length = _DECODER.raw_decode(text)
    except (ValueError, UnicodeDecodeError):
        return None
    return position + len(text[:length].encode("utf-8"))


class Section:
    """The section `data[start:end]`; converted by parsing it (`_fast.Section` does not)."""

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data, self.start, self.end = data, start, end

    def convert(self, specs: dict, loads, dumps) -> tuple[bytes, list, list] | None:
        try:
            parsed = loads(self.data[self.start : self.end])
        except Exception:  # noqa: BLE001 - not valid JSON: the caller parses the whole payload
            return None
        converted, invalid, unknown = convert_histograms(parsed, specs)
        return dumps(converted), invalid, unknown


def parse_section(data: bytes, start: int) -> Section | None:
    end = _value_end(data, start)
    if end is None or data[start : start + 1] != b"{":
        return None
    names = _DECODER.raw_decode(data[start:end].decode("utf-8"))[0]
    if not all(_plain_key(name) for name in names):
        return None
    return Section(data, start, end)


def _members(data: bytes, position: int, first: bool):
    """(key, value start, value end) of each member of the object going on at `position`
    (just after its `{` or after a member's value), then (None, end of the object, 0); stops
    early at anything else. Keys with escapes stop it too (the compiled scan takes no escapes)."""

    def skip(at: int) -> int:
        while at < len(data) and data[at] in _WS:
            at += 1
        return at

    while True:
        position = skip(position)
        if data[position : position + 1] == b"}":
            yield None, position + 1, 0
            return
        if not first:
            if data[position : position + 1] != b",":
                return
            position = skip(position + 1)
        first = False
        if data[position : position + 1] != b'"':
            return
        close = data.find(b'"', position + 1)
        if close < 0 or b"\\" in data[position + 1 : close]:
            return
        key = data[position + 1 : close]
        position = skip(close + 1)
        if data[position : position + 1] != b":":
            return
        position = skip(position + 1)
        end = _value_end(data, position)
        if end is None:
            return
        yield key, position, end
        position = end


def member_start(data: bytes, name: bytes) -> int | None:
    start = len(data) - len(data.lstrip(_WS))
    if data[start : start + 1] != b"{":
        return None
    for key, value_start, _ in _members(data, start + 1, True):
        if key is None:
            return None
        if key == name:
            return value_start if data[value_start : value_start + 1] == b"{" else None
    return None


def plain_members_after(data: bytes, position: int, name: bytes) -> bool:
    for key, at, _ in _members(data, position, False):
        if key is None:
            return not data[at:].strip(_WS)
        if key == name:
            return False
    return False
