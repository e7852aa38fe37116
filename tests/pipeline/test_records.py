"""The incoming batch format: round trips, torn tails, and damage that must not pass silently."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import CorruptBatch
from pipeline.records import HEADER, encode_record, iter_records, scan

RECORDS = [
    (
        1366848000000,
        "/submit/telemetry/1b2c/saved-session/Firefox/23.0a1/nightly/20130424",
        {"Content-Encoding": "gzip"},
        b"\x1f\x8b" + bytes(range(256)),
    ),
    (1366848000001, "/submit/telemetry/ünïcode", {}, b""),
    (
        1366848000002,
        "/submit/glean/metrics/1/abc",
        {"Date": "Thu, 25 Apr 2013 00:00:00 GMT"},
        b'{"a": 1}',
    ),
]


def batch(records=RECORDS) -> bytes:
    return b"".join(encode_record(*r) for r in records)


def decoded(data: bytes) -> list[tuple]:
    return [
        (r.received_ms, r.path, dict(r.headers), r.body) for r in iter_records(io.BytesIO(data))
    ]


def test_records_round_trip_with_offsets():
    data = batch()
    records = list(iter_records(io.BytesIO(data)))
    assert [(r.received_ms, r.path, dict(r.headers), r.body) for r in records] == RECORDS
    assert records[0].offset == 0
    assert records[1].offset == len(encode_record(*RECORDS[0]))
    assert scan(data).valid_length == len(data)
    assert scan(data).records == 3 and scan(data).torn_bytes == 0


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**63),
            st.text(max_size=50),
            st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3),
            st.binary(max_size=200),
        ),
        max_size=5,
    )
)
def test_any_records_round_trip(records):
    assert decoded(batch(records)) == records


def test_every_torn_tail_is_tolerated():
    whole = batch(RECORDS[:2])
    last = encode_record(*RECORDS[2])
    for cut in range(1, len(last)):
        data = whole + last[:cut]
        assert decoded(data) == RECORDS[:2], f"cut at {cut}"
        result = scan(data)
        assert (result.valid_length, result.records, result.torn_bytes) == (len(whole), 2, cut)


def test_zero_filled_tail_is_tolerated():
    data = batch() + b"\x00" * 100
    assert decoded(data) == RECORDS
    assert scan(data).torn_bytes == 100


def test_last_record_with_unwritten_bytes_is_a_torn_tail():
    data = bytearray(batch())
    data[-1] ^= 0xFF  # its length is whole but the final bytes never reached the disk
    assert decoded(bytes(data)) == RECORDS[:2]


def test_flipped_body_byte_in_the_middle_raises_with_the_offset():
    data = bytearray(batch())
    second = len(encode_record(*RECORDS[0]))
    data[HEADER.size + 5] ^= 0x01  # inside the first record's path
    with pytest.raises(CorruptBatch) as caught:
        decoded(bytes(data))
    assert caught.value.offset == 0
    assert "checksum" in str(caught.value)
    data = bytearray(batch())
    data[second + len(encode_record(*RECORDS[1])) - HEADER.size - 1] ^= 0x01
    with pytest.raises(CorruptBatch):
        scan(bytes(data))


def test_bad_magic_in_the_middle_raises():
    data = bytearray(batch())
    offset = len(encode_record(*RECORDS[0]))
    data[offset : offset + 4] = b"XXXX"
    with pytest.raises(CorruptBatch, match=f"byte {offset}: bad magic"):
        decoded(bytes(data))


def test_corrupt_length_in_the_middle_is_not_mistaken_for_a_torn_tail():
    data = bytearray(batch())
    # body_len of the first record now runs past the end of the file
    struct.pack_into(">I", data, 18, 10_000_000)
    with pytest.raises(CorruptBatch, match="byte 0"):
        decoded(bytes(data))


def test_non_object_headers_are_corruption():
    path, headers, body = b"/p", b"[1,2]", b"x"
    import zlib

    crc = zlib.crc32(body, zlib.crc32(headers, zlib.crc32(path)))
    data = HEADER.pack(b"TPR1", 1, len(path), len(headers), len(body), crc) + path + headers + body
    with pytest.raises(CorruptBatch, match="not a JSON object"):
        decoded(data + batch())


def test_overlong_path_is_refused_when_encoding():
    with pytest.raises(ValueError):
        encode_record(0, "/" + "x" * 70_000, {}, b"")
