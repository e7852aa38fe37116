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

from pipeline.errors import CorruptBatch

MAGIC = b"TPR1"
HEADER = struct.Struct(">4sQHIII")
MAX_PATH = 0xFFFF
# `json.dumps(..., separators=(",", ":"), sort_keys=True)`, its encoder made once (per record
# on the ingest edge, making it was a third of the cost)
_HEADERS_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


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
    header_bytes = _HEADERS_JSON.encode(dict(headers)).encode("utf-8")
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
    for record, _end in _parse(data, source):
        yield record


def scan(data: bytes, source: str = "spool") -> ScanResult:
    """Find the length of the valid prefix of a spool file, for truncation after a crash."""
    offset = records = 0
    for _record, end in _parse(data, source):
        records += 1
        offset = end
    return ScanResult(offset, records, len(data) - offset)


def _checksum(data: bytes, start: int, path_len: int, headers_len: int, end: int) -> int:
    path_end = start + path_len
    headers_end = path_end + headers_len
    crc = zlib.crc32(data[start:path_end])
    crc = zlib.crc32(data[path_end:headers_end], crc)
    return zlib.crc32(data[headers_end:end], crc)


def _whole_record_at(data: bytes, offset: int) -> bool:
    """True when a complete record with a good checksum starts at `offset`."""
    if len(data) - offset < HEADER.size:
        return False
    magic, _ms, path_len, headers_len, body_len, crc = HEADER.unpack_from(data, offset)
    end = offset + HEADER.size + path_len + headers_len + body_len
    if magic != MAGIC or end > len(data):
        return False
    return _checksum(data, offset + HEADER.size, path_len, headers_len, end) == crc


def _later_record_exists(data: bytes, offset: int) -> bool:
    """A torn append is the last thing in a file: a whole record after it means damage."""
    position = data.find(MAGIC, offset + 1)
    while position != -1:
        if _whole_record_at(data, position):
            return True
        position = data.find(MAGIC, position + 1)
    return False


def _parse(data: bytes, source: str) -> Iterator[tuple[Record, int]]:
    offset = 0
    size = len(data)
    while offset < size:
        if size - offset < HEADER.size:
            if _later_record_exists(data, offset):
                raise CorruptBatch(source, offset, "truncated header before more records")
            return  # the last append was cut short inside its header
        magic, received_ms, path_len, headers_len, body_len, crc = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + path_len + headers_len + body_len
        if magic != MAGIC:
            if not data[offset:].strip(b"\x00"):
                return  # zero-filled tail: a crash after the size grew, before the data landed
            raise CorruptBatch(source, offset, "bad magic")
        if end > size:
            if _later_record_exists(data, offset):
                raise CorruptBatch(source, offset, "record length runs past later records")
            return  # the last append was cut short
        start = offset + HEADER.size
        if _checksum(data, start, path_len, headers_len, end) != crc:
            if end == size and not _later_record_exists(data, offset):
                return  # the last append's bytes did not all reach the disk
            raise CorruptBatch(source, offset, "checksum mismatch")
        path_bytes = data[start : start + path_len]
        header_bytes = data[start + path_len : start + path_len + headers_len]
        try:
            path = path_bytes.decode("utf-8")
            headers = json.loads(header_bytes) if header_bytes else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptBatch(source, offset, f"undecodable header: {exc}") from exc
        if not isinstance(headers, dict):
            raise CorruptBatch(source, offset, "headers are not a JSON object")
        yield (
            Record(received_ms, path, headers, data[start + path_len + headers_len : end], offset),
            end,
        )
        offset = end
