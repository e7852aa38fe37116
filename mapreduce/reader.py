"""Stream the records of one published object: lz4 frame -> lines -> (docId, json text).

A published object is an lz4 frame file with one `docId<TAB>json` record per line. Lines are
decompressed and yielded one at a time, so a file is never held in memory whole. A line is
*unparsable* when it has no tab, an empty docId, is not UTF-8, or its value is not a JSON
object's text (does not start with `{` and end with `}`: a truncated record); the value itself
is handed to the script unparsed, as in the original system, since many jobs never parse it.

An `errors/` object holds one JSON object per line instead (`keyed=False`): its key is the
record's `docId`, or `<batch>#<offset>` for a record that had none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import BinaryIO

import lz4.frame
import orjson

from mapreduce.errors import BadInputData

MAX_LINE_BYTES = 256 * 1024 * 1024  # one record this long means the file is not a published object


@dataclasses.dataclass
class FileStats:
    """What reading one file found; bad data is counted here rather than failing the job."""

    name: str
    records: int = 0
    uncompressed_bytes: int = 0
    bad_lines: int = 0
    first_bad_line: int = 0
    corrupt: str = ""


# Chunks stay below glibc's 128 KiB mmap threshold. Dask's nanny sets MALLOC_TRIM_THRESHOLD_,
# which freezes that threshold, so larger chunks were mmap'd and unmapped on every read and
# page faults halved a Dask mapper's throughput (measured: 200 vs 430 MB/s per CPU second).
READ_BYTES = 32 * 1024
MAX_DECOMPRESSED = 96 * 1024


def decompressed_chunks(
    stream: BinaryIO, on_progress: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """Yield the decompressed content of an lz4 frame file in bounded chunks.

    Handles several concatenated frames. Raises EOFError if the file ends inside a frame and
    RuntimeError (from lz4) if the data is not a valid frame.
    """
    decompressor = lz4.frame.LZ4FrameDecompressor()
    started = False
    while True:
        if decompressor.needs_input:
            compressed = stream.read(READ_BYTES)
            if not compressed:
                break
            if on_progress is not None:
                on_progress(len(compressed))
            started = True
            data = decompressor.decompress(compressed, max_length=MAX_DECOMPRESSED)
        else:
            data = decompressor.decompress(b"", max_length=MAX_DECOMPRESSED)
        if data:
            yield data
        if decompressor.eof:
            leftover = decompressor.unused_data
            decompressor = lz4.frame.LZ4FrameDecompressor()
            if leftover:
                data = decompressor.decompress(leftover, max_length=MAX_DECOMPRESSED)
                if data:
                    yield data
            else:
                started = False
    if started:
        raise EOFError("file ends inside an lz4 frame (truncated)")


def read_records(
    stream: BinaryIO,
    stats: FileStats,
    *,
    strict: bool = False,
    on_progress: Callable[[int], None] | None = None,
    keyed: bool = True,
) -> Iterator[tuple[str, str]]:
    """Yield `(docId, json_text)` for each good line of the lz4 frame file in `stream`.

    A corrupt or truncated frame ends the file: what was read so far stays mapped and the
    file is recorded in `stats.corrupt`. With `strict`, bad data raises BadInputData instead.
    `on_progress` gets the number of compressed bytes read, as they are read.
    """
    _parse = _parse_keyed if keyed else _parse_error_line
    lineno = 0
    pending = b""
    try:
        for data in decompressed_chunks(stream, on_progress):
            stats.uncompressed_bytes += len(data)
            start = 0
            if pending:  # the line cut by the previous chunk: only it is copied, not the chunk
                newline = data.find(b"\n")
                if newline < 0:
                    pending += data
                    if len(pending) > MAX_LINE_BYTES:
                        raise RuntimeError(
                            f"line {lineno + 1} is longer than {MAX_LINE_BYTES} bytes"
                        )
                    continue
                line = pending + data[:newline]
                pending = b""
                start = newline + 1
                lineno += 1
                record = _parse(line, 0, len(line))
                if record is None:
                    _bad_line(stats, lineno, strict)
                else:
                    stats.records += 1
                    yield record
            # Lines are found in place and only the docId and the value are copied out
            # (decoded): splitting the chunk first copied every byte twice more.
            find = data.find
            while (newline := find(b"\n", start)) >= 0:
                lineno += 1
                record = _parse(data, start, newline)
                start = newline + 1
                if record is None:
                    _bad_line(stats, lineno, strict)
                    continue
                stats.records += 1
                yield record
            pending = data[start:]
            if len(pending) > MAX_LINE_BYTES:
                raise RuntimeError(f"line {lineno + 1} is longer than {MAX_LINE_BYTES} bytes")
    except (RuntimeError, EOFError) as exc:
        # lz4 reports a damaged frame as RuntimeError and a truncated one as EOFError.
        stats.corrupt = f"{type(exc).__name__}: {exc} (after {lineno} lines)"
        if strict:
            raise BadInputData(stats.name, f"corrupt lz4 data: {stats.corrupt}") from exc
        return
    if pending:
        lineno += 1
        record = _parse(pending, 0, len(pending))
        if record is None:
            _bad_line(stats, lineno, strict)
        else:
            stats.records += 1
            yield record


def _parse_keyed(data: bytes, start: int, end: int) -> tuple[str, str] | None:
    """The (docId, value) of the line data[start:end] (without its newline), None if bad."""
    if end > start and data[end - 1] == 13:  # \r
        end -= 1
    tab = data.find(b"\t", start, end)
    # 123 and 125 are `{` and `}`; tab + 1 < end also rules out a value that is only `{`
    if tab <= start or tab + 1 >= end - 1 or data[tab + 1] != 123 or data[end - 1] != 125:
        return None
    try:
        return data[start:tab].decode(), data[tab + 1 : end].decode()
    except UnicodeDecodeError:
        return None


def _parse_error_line(data: bytes, start: int, end: int) -> tuple[str, str] | None:
    """The (key, line) of an errors/ record data[start:end]: its docId, or batch#offset."""
    line = data[start:end]
    if line.endswith(b"\r"):
        line = line[:-1]
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(entry, dict):
        return None
    key = entry.get("docId") or f"{entry.get('batch', '')}#{entry.get('offset', '')}"
    return str(key), line.decode()


def _bad_line(stats: FileStats, lineno: int, strict: bool) -> None:
    stats.bad_lines += 1
    if not stats.first_bad_line:
        stats.first_bad_line = lineno
    if strict:
        raise BadInputData(stats.name, f"line {lineno} is not a record")
