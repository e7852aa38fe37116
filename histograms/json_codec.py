"""JSON parsing and serialising for payloads: orjson, with ujson as the fallback.

The original server used ujson. bench/convert_histograms.py measured both on the real 78 KB idle-daily
payload (one core): orjson parses it about 2.4x faster and serialises the converted payload
about 4x faster than ujson, and parse + serialise is most of the per-record cost, so both
directions use orjson. Anything orjson refuses (integers beyond 64 bits, non-string keys) goes
through ujson, and `USE_UJSON=True` in tests or benchmarks switches back entirely.
"""

from __future__ import annotations

import orjson
import ujson

from histograms.errors import JSONDecodeError

#: Set by the benchmark to measure the design's original codec.
USE_UJSON = False


def loads(data: bytes | bytearray | memoryview | str):
    """Parse one JSON document; raises JSONDecodeError (a ValueError) with the parser's reason."""
    if not USE_UJSON:
        try:
            return orjson.loads(data)
        except (ValueError, TypeError):
            pass  # orjson is stricter (e.g. integers beyond 64 bits): let ujson decide
    try:
        return ujson.loads(data)
    except (ValueError, TypeError) as exc:
        raise JSONDecodeError(f"invalid JSON: {exc}") from exc


def dumps(obj) -> str:
    """Compact JSON text (no spaces), UTF-8 characters kept as they are."""
    return dumps_bytes(obj).decode("utf-8")


def dumps_bytes(obj) -> bytes:
    """Like dumps, as UTF-8 bytes (what gets written to files; saves one copy)."""
    if not USE_UJSON:
        try:
            return orjson.dumps(obj)
        except TypeError:
            pass  # e.g. an integer beyond 64 bits: ujson copes with more of them
    return ujson.dumps(obj, ensure_ascii=False, escape_forward_slashes=False).encode("utf-8")
