"""The output format: one `key<TAB>value` line per written pair.

Strings are written as they are; every other key or value as JSON (`json.dumps` with its
default separators, so a list of numbers reads `[1, 2, 3]` as in Python). JSON rather than
`str()` makes a tuple and a list print the same, so both engines and a key that went through a
spill (where `("a", 1)` and `["a", 1]` are one key) give byte-identical lines.
"""

from __future__ import annotations

import json
from typing import Any

from mapreduce.lazyjson import to_jsonable


def to_text(item: Any) -> str:
    kind = type(item)
    if kind is str:
        return item
    if kind is int:
        return str(item)
    # to_jsonable: a LazyRecord as the dict it stands for, anything else as its str()
    return json.dumps(item, ensure_ascii=False, default=to_jsonable)


def format_line(key: Any, value: Any) -> str:
    return f"{to_text(key)}\t{to_text(value)}\n"
