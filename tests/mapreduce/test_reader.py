"""Reading published objects: lz4 frames to records, with bad data counted, not fatal."""

from __future__ import annotations

import io

import lz4.frame
import pytest

from mapreduce import reader
from mapreduce.errors import BadInputData
from mapreduce.reader import FileStats, read_records


def records_of(data: bytes, strict: bool = False) -> tuple[list[tuple[str, str]], FileStats]:
    stats = FileStats("some/file.lz4")
    return list(read_records(io.BytesIO(data), stats, strict=strict)), stats


def test_lines_spanning_chunks_and_frames_are_reassembled(monkeypatch):
    monkeypatch.setattr(reader, "READ_BYTES", 7)
    monkeypatch.setattr(reader, "MAX_DECOMPRESSED", 5)
    lines = [f'id-{i}\t{{"n": {i}, "pad": "{"x" * (i * 13)}"}}' for i in range(40)]
    first = lz4.frame.compress(("\n".join(lines[:25]) + "\n").encode())
    second = lz4.frame.compress("\n".join(lines[25:]).encode())  # no final newline
    got, stats = records_of(first + second)
    assert ["\t".join(r) for r in got] == lines
    assert stats.records == 40 and stats.bad_lines == 0 and not stats.corrupt
    assert stats.uncompressed_bytes == len("\n".join(lines))


def test_truncated_file_keeps_what_was_read_and_is_reported():
    body = "".join(f'id-{i}\t{{"n": {i}}}\n' for i in range(5000)).encode()
    data = lz4.frame.compress(body, block_size=lz4.frame.BLOCKSIZE_MAX64KB)
    got, stats = records_of(data[: len(data) - 100])
    assert 0 < len(got) < 5000
    assert "truncated" in stats.corrupt


def test_truncated_file_fails_under_strict():
    data = lz4.frame.compress(b'id\t{"a": 1}\n' * 10)
    with pytest.raises(BadInputData, match="some/file.lz4"):
        records_of(data[:-6], strict=True)


def test_windows_line_endings_and_bad_lines_are_told_apart():
    data = lz4.frame.compress(b'a\t{"x": 1}\r\n\t{"no": "id"}\nb\t{"x": 2}\n\n')
    got, stats = records_of(data)
    assert got == [("a", '{"x": 1}'), ("b", '{"x": 2}')]
    assert stats.bad_lines == 2 and stats.first_bad_line == 2


def _reference(body: bytes) -> tuple[list[tuple[str, str]], list[int]]:
    """What a reader must yield: the rule of the module docstring, applied line by line."""
    good, bad = [], []
    for number, line in enumerate(body.split(b"\n"), 1):
        if number == body.count(b"\n") + 1 and not line:
            break  # the empty remainder after a final newline is not a line
        line = line[:-1] if line.endswith(b"\r") else line
        doc_id, tab, value = line.partition(b"\t")
        try:
            if doc_id and tab and value.startswith(b"{") and value.endswith(b"}") and value != b"{":
                good.append((doc_id.decode(), value.decode()))
                continue
        except UnicodeDecodeError:
            pass
        bad.append(number)
    return good, bad


@pytest.mark.parametrize("chunk", [3, 16, 1 << 16])
def test_every_kind_of_line_at_any_chunk_size_matches_the_rule(monkeypatch, chunk):
    monkeypatch.setattr(reader, "READ_BYTES", chunk)
    monkeypatch.setattr(reader, "MAX_DECOMPRESSED", chunk)
    lines = [
        b'a\t{"x": 1}',
        b'b\t{"long": "' + b"y" * 300 + b'"}',  # longer than the small chunks
        b"",
        b'\t{"no": "id"}',
        b"no tab",
        b"c\t{",
        b"d\t}",
        b"e\t{}",
        b'f\t{"x": 1} ',
        b'g\t{"x": "\xff"}',
        b'\xff\t{"x": 1}',
        b'h\t{"x": 1}\r',
        b"\r",
        b'i\t{"tab\tinside": "\xc3\xa9"}',
        b'j\t["not", "an object"]',
        b'k\t{"last": true}',
    ]
    for ending in (b"\n", b""):
        body = b"\n".join(lines) + ending
        got, stats = records_of(lz4.frame.compress(body))
        good, bad = _reference(body)
        assert got == good
        assert stats.records == len(good) and stats.bad_lines == len(bad)
        assert stats.first_bad_line == bad[0]


def test_a_line_longer_than_the_limit_makes_the_file_corrupt(monkeypatch):
    monkeypatch.setattr(reader, "READ_BYTES", 64)
    monkeypatch.setattr(reader, "MAX_DECOMPRESSED", 64)
    monkeypatch.setattr(reader, "MAX_LINE_BYTES", 1000)
    body = b'a\t{"x": 1}\n' + b'b\t{"x": "' + b"z" * 5000 + b'"}\nc\t{"x": 3}\n'
    got, stats = records_of(lz4.frame.compress(body))
    assert got == [("a", '{"x": 1}')]
    assert "longer than 1000 bytes" in stats.corrupt
