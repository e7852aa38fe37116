"""The output formats: one `key<TAB>value` line (tsv) or one JSON array (jsonl) per written pair.

Strings are written as they are; every other key or value as JSON (`json.dumps` with its
default separators, so a list of numbers reads `[1, 2, 3]` as in Python). JSON rather than
`str()` makes a tuple and a list print the same, so both engines and a key that went through a
spill (where `("a", 1)` and `["a", 1]` are one key) give byte-identical lines.

tsv is the original format and is ambiguous when a string key or value holds a tab or a
newline; jsonl (`[key, value]` per line) is safe for anything and reads back with `json.loads`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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


def format_jsonl_line(key: Any, value: Any) -> str:
    return json.dumps([key, value], ensure_ascii=False, default=to_jsonable) + "\n"


FORMATTERS: dict[str, Callable[[Any, Any], str]] = {"tsv": format_line, "jsonl": format_jsonl_line}
