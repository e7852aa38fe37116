"""The incoming batch format: what ingest spools and uploads, and convert reads.

One record per accepted request, appended back to back:

    offset  size  field
    0       4     magic b"TPR1"
    4       8     received_ms   (uint64, big-endian, ms since the epoch)
    12      2     path_len      (uint16)
    14      4     headers_len   (uint32; a JSON object of selected request headers)
    18      4     body_len      (uint32)
    22      4     crc32 of path + headers + body (uint32)
    26      ...   path (UTF-8), headers (JSON, UTF-8), body (raw bytes, exactly as received)

A reader is tolerant of a torn tail (a crash while appending the last record) and strict
about everything else: a bad magic or checksum in the middle of a file is an error, never
skipped in silence.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib
from collections.abc import Iterator, Mapping
from typing import BinaryIO

from pipeline.errors import PipelineError

MAGIC = b"TPR1"
HEADER = struct.Struct(">4sQHIII")
MAX_PATH = 0xFFFF


class CorruptBatch(PipelineError):
    """A batch has damage that is not a torn tail; the offset says where."""

    def __init__(self, source: str, offset: int, problem: str) -> None:
        self.source, self.offset, self.problem = source, offset, problem
        super().__init__(f"{source}: corrupt record at byte {offset}: {problem}")


@dataclasses.dataclass(frozen=True)
class Record:
    received_ms: int
    path: str
    headers: Mapping[str, str]
    body: bytes
    offset: int = 0


def encode_record(received_ms: int, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
    """Serialise one request; the bytes are appended to a spool file as one write."""
    path_bytes = path.encode("utf-8")
    if len(path_bytes) > MAX_PATH:
        raise ValueError("path too long for a record")
    header_bytes = json.dumps(dict(headers), separators=(",", ":"), sort_keys=True).encode("utf-8")
    crc = zlib.crc32(body, zlib.crc32(header_bytes, zlib.crc32(path_bytes)))
    head = HEADER.pack(MAGIC, received_ms, len(path_bytes), len(header_bytes), len(body), crc)
    return b"".join((head, path_bytes, header_bytes, body))


@dataclasses.dataclass
class ScanResult:
    """How far a file holds whole records; `torn_bytes` follow them (a crash's leftovers)."""

    valid_length: int
    records: int
    torn_bytes: int


def iter_records(stream: BinaryIO, source: str = "batch") -> Iterator[Record]:
    """Yield every whole record; stop quietly at a torn tail, raise CorruptBatch otherwise."""
    data = stream.read()
    yield from _parse(data, source, stop_at_torn_tail=True)


def scan(data: bytes, source: str = "spool") -> ScanResult:
    """Find the length of the valid prefix of a spool file, for truncation after a crash."""
    offset = records = 0
    for record in _parse(data, source, stop_at_torn_tail=True):
        records += 1
        offset = record.offset + _record_size(record)
    return ScanResult(offset, records, len(data) - offset)


def _record_size(record: Record) -> int:
    header_bytes = json.dumps(dict(record.headers), separators=(",", ":"), sort_keys=True)
    return HEADER.size + len(record.path.encode()) + len(header_bytes.encode()) + len(record.body)


def _is_torn_tail(data: bytes, offset: int, declared_end: int | None) -> bool:
    """True when the damage at `offset` can only be an interrupted final append."""
    if declared_end is not None and declared_end >= len(data):
        return True
    return not data[offset:].strip(b"\x00")


def _parse(data: bytes, source: str, stop_at_torn_tail: bool) -> Iterator[Record]:
    offset = 0
    size = len(data)
    while offset < size:
        if size - offset < HEADER.size:
            if _is_torn_tail(data, offset, size + 1):
                return
        magic, received_ms, path_len, headers_len, body_len, crc = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + path_len + headers_len + body_len
        if magic != MAGIC:
            if _is_torn_tail(data, offset, None):
                return
            raise CorruptBatch(source, offset, "bad magic")
        if end > size:
            return  # the last append was cut short
        start = offset + HEADER.size
        path_bytes = data[start : start + path_len]
        header_bytes = data[start + path_len : start + path_len + headers_len]
        body = data[start + path_len + headers_len : end]
        if zlib.crc32(body, zlib.crc32(header_bytes, zlib.crc32(path_bytes))) != crc:
            if _is_torn_tail(data, offset, end if end == size else None):
                return
            raise CorruptBatch(source, offset, "checksum mismatch")
        try:
            path = path_bytes.decode("utf-8")
            headers = json.loads(header_bytes) if header_bytes else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptBatch(source, offset, f"undecodable header: {exc}") from exc
        yield Record(received_ms, path, headers, body, offset)
        offset = end
