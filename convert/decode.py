"""Turn a raw request body into bytes of JSON: gunzip with a decompressed-size limit.

The limit is what makes a gzip bomb (a few KB expanding to gigabytes) an error record rather
than an out-of-memory kill of the worker: decompression stops one byte past the limit.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from convert.outcomes import CORRUPT_GZIP, TOO_LARGE, RecordRejected

GZIP_MAGIC = b"\x1f\x8b"


def content_encoding(headers: Mapping[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "content-encoding":
            return str(value).strip().lower()
    return ""


def decoded_body(body: bytes, headers: Mapping[str, str], limit: int) -> bytes:
    """Return the body, gunzipped when it is gzip (by header or by magic), at most `limit` bytes."""
    declared_gzip = content_encoding(headers) in ("gzip", "x-gzip")
    if body[:2] == GZIP_MAGIC:
        return gunzip(body, limit)
    if declared_gzip:
        raise RecordRejected(
            CORRUPT_GZIP, "Content-Encoding is gzip but the body has no gzip header"
        )
    if len(body) > limit:
        raise RecordRejected(TOO_LARGE, f"body of {len(body)} bytes is over the {limit} byte limit")
    return body


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress one gzip stream, refusing to produce more than `limit` bytes."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RecordRejected(CORRUPT_GZIP, f"gzip stream is damaged: {exc}") from exc
    if len(data) > limit:
        raise RecordRejected(TOO_LARGE, f"decompresses to more than the {limit} byte limit")
    if not inflater.eof:
        raise RecordRejected(CORRUPT_GZIP, "gzip stream is truncated")
    return data
