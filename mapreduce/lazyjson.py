"""A record read only as far as a job looks: `LazyRecord(value)` behaves like `loads(value)`.

A job script's `value` is the record's JSON text (so `orjson.loads(value)` keeps working:
orjson accepts exact `str` only, which is why `value` itself is not replaced). Parsing a
converted record whole costs more than everything else a mapper does, and most jobs read a
few fields. `LazyRecord(value)` is a read-only Mapping over the top-level members: indexing,
`get`, `in`, iteration, `len`, `keys/items/values` and `==` behave as on the parsed dict, but
a member is parsed (by orjson, from its own span of the text) only when it is read.
`record.get_path("payload", "histograms", "GC_MS")` goes deeper without parsing the levels
on the way. A member the job never reads is not validated; a text that is not shaped like a
JSON object is parsed whole at the first access, raising orjson's error as `loads` would.

Without the native scanner (`mapreduce._jsonscan`, built by `make setup`) the first access
parses the whole text: same results, no speed-up.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from orjson import loads

try:
    from mapreduce._jsonscan import find as _find
    from mapreduce._jsonscan import index as _index
    from mapreduce._jsonscan import span as _span
except ImportError:  # not built (no compiler): every record is parsed whole
    _find = _index = _span = None

_MISSING = object()


class LazyRecord(Mapping):
    """The parsed record of JSON object text, each top-level member parsed on first read."""

    __slots__ = ("_text", "_spans", "_values")

    def __init__(self, text: str | bytes) -> None:
        self._text = text
        self._spans: dict[str, tuple[int, int]] | None = None
        self._values: dict[str, Any] = {}

    def _members(self) -> dict[str, Any]:
        spans = self._spans
        if spans is None:
            spans = _index(self._text, 0, -1, loads) if _index is not None else None
            if spans is None:  # no scanner, or not shaped like an object: parse it all
                parsed = loads(self._text)
                if not isinstance(parsed, dict):
                    raise TypeError(f"the record is a JSON {type(parsed).__name__}, not an object")
                self._values = parsed
                spans = dict.fromkeys(parsed, (0, 0))
            self._spans = spans
        return spans

    def __getitem__(self, key: str) -> Any:
        value = self._values.get(key, _MISSING)
        if value is _MISSING:
            start, end = self._members()[key]
            values = self._values  # the whole dict if the text had to be parsed whole
            value = values.get(key, _MISSING)
            if value is _MISSING:
                value = values[key] = loads(_span(self._text, start, end))
        return value

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self._members()

    def __iter__(self) -> Iterator[str]:
        return iter(self._members())

    def __len__(self) -> int:
        return len(self._members())

    def __reversed__(self) -> Iterator[str]:
        return reversed(list(self._members()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyRecord):
            other = other.to_dict()
        if isinstance(other, Mapping):
            return self.to_dict() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable, like the dict

    def __repr__(self) -> str:
        return repr(self.to_dict())

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self.to_dict(),))  # written through a spill, it arrives as the dict

    def to_dict(self) -> dict[str, Any]:
        """The parsed record (every member parsed): what `loads(value)` returns."""
        return {key: self[key] for key in self._members()}

    def get_path(self, *keys: str, default: Any = None) -> Any:
        """`record[k1][k2]...`, or `default` when a level is missing or not an object.

        Only the last level's value is parsed: the objects on the way are only scanned.
        """
        if not keys:
            raise TypeError("get_path needs at least one key")
        first, rest = keys[0], keys[1:]
        members = self._members() if _find is not None else None
        if not rest or members is None or first in self._values:
            value = self.get(first, _MISSING)
            for key in rest:
                if value is _MISSING or not isinstance(value, dict):
                    return default
                value = value.get(key, _MISSING)
            return default if value is _MISSING else value
        span = members.get(first)
        if span is None:
            return default
        text = self._text
        start, end = span
        for key in rest:
            found = _find(text, start, end, key.encode(), loads)
            if not found:  # absent (()) or not an object (None)
                return default
            start, end = found
        return loads(_span(text, start, end))


def to_jsonable(item: Any) -> Any:
    """`json.dumps(..., default=to_jsonable)`: a LazyRecord is written as its dict."""
    if isinstance(item, LazyRecord):
        return item.to_dict()
    return str(item)
