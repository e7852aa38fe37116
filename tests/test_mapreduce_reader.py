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
