"""Reading published records one by one, for people: `mapreduce.read()` and `mapreduce.cat`.

A MapReduce job streams records unparsed through forked mappers; a notebook or a person
looking at "that one ping" wants the opposite: records parsed, with their dimensions by name,
in order, from one process. Both share the filter (`pipeline.layout.InputFilter`, including
its `"source"` of telemetry, namespaces/ or errors/), the listing and the lz4 line reader.

For an `errors/` record the raw request body is kept as the converter stored it (`body`,
base64) and, where it is text, also decoded as `body_text` (gunzipped first if it was gzip).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gzip
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from mapreduce.reader import FileStats, read_records
from pipeline.layout import ERRORS, SOURCES, InputFilter, list_matching, source_dimensions
from pipeline.stores import BlobStore, open_store

_LONG_NUMBER = re.compile(r"\d{19}")
MAX_BODY_TEXT = 16 * 1024 * 1024  # a gzip body is not inflated beyond this for display

FilterSource = InputFilter | str | Path | Mapping[str, Any] | None


def as_filter(input_filter: FilterSource, source: str | None = None) -> InputFilter:
    """An InputFilter from a filter file, a filter dict, an InputFilter or None (everything)."""
    if input_filter is None:
        return InputFilter.everything(source) if source else InputFilter.everything()
    if not isinstance(input_filter, InputFilter):
        input_filter = InputFilter.load(input_filter)
    if source and input_filter.source != source:
        raise ValueError(f"the filter selects source {input_filter.source!r}, not {source!r}")
    return input_filter


def add_selection_arguments(
    parser: argparse.ArgumentParser, published_url: str, filter_help: str, source_help: str
) -> None:
    """The flags that choose records, the same for every records CLI (cat, export):
    `-f/--input-filter`, `--source` and `-b/--bucket`."""
    parser.add_argument("-f", "--input-filter", metavar="FILE", help=filter_help)
    parser.add_argument("--source", choices=SOURCES, help=source_help)
    parser.add_argument(
        "-b",
        "--bucket",
        metavar="URL",
        default=published_url,
        help="store URL of the published data (default: TELEMETRY_PUBLISHED_URL = %(default)s)",
    )


def read(
    input_filter: FilterSource = None,
    *,
    source: str | None = None,
    store: BlobStore | str | None = None,
    doc_id: str | None = None,
    limit: int | None = None,
) -> Iterator[tuple[str, dict[str, str], dict[str, Any]]]:
    """Yield `(key, dims, record)` for every published record the filter selects.

    `key` is the docId (for errors/ records without one, `<batch>#<offset>`), `dims` the
    dimensions by name, `record` the parsed JSON. `store` is a BlobStore or a store URL
    (default: TELEMETRY_PUBLISHED_URL). Corrupt files and unparsable lines are skipped, as a
    MapReduce job without --strict does.
    """
    chosen = as_filter(input_filter, source)
    count = 0
    for key, dims, text in read_text(chosen, store=store):
        if doc_id is not None and key != doc_id:
            continue
        if limit is not None and count >= limit:
            return
        record = parse(text)
        if chosen.source == ERRORS:
            _add_body_text(record)
        count += 1
        yield key, dims, record


def read_text(
    input_filter: InputFilter, *, store: BlobStore | str | None = None
) -> Iterator[tuple[str, dict[str, str], str]]:
    """Yield `(key, dims, json_text)` for every selected record, unparsed (for bulk copies)."""
    opened = _open(store)
    for info in list_matching(opened, input_filter):
        tree, dims = source_dimensions(info.key)
        with opened.open(info.key) as stream:
            for key, text in read_records(stream, FileStats(info.key), keyed=tree != ERRORS):
                yield key, dict(dims), text


def parse(text: str) -> Any:
    """JSON text to Python: orjson (about 3x faster), except for text with a run of 19 or
    more digits, which may be an integer beyond 64 bits that orjson would turn into a float."""
    if _LONG_NUMBER.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def dumps(value: Any) -> str:
    """One line of JSON text (UTF-8 kept as is), with the same fallback as `parse`."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _open(store: BlobStore | str | None) -> BlobStore:
    if isinstance(store, BlobStore):
        return store
    from pipeline.config import load_settings

    settings = load_settings()
    return open_store(
        store or settings.published_url,
        setting="TELEMETRY_PUBLISHED_URL",
        endpoint_url=settings.s3_endpoint_url,
    )


def decode_body(encoded: str) -> str | None:
    """The text of a base64 request body (gunzipped if gzip), or None when it is not text."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    if raw[:2] == b"\x1f\x8b":
        try:
            inflater = zlib.decompressobj(wbits=31)
            raw = inflater.decompress(raw, MAX_BODY_TEXT)
        except (zlib.error, gzip.BadGzipFile):
            return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _add_body_text(record: dict[str, Any]) -> None:
    body = record.get("body")
    if isinstance(body, str):
        text = decode_body(body)
        if text is not None:
            record["body_text"] = text
