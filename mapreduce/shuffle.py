"""Moving map output to reducers: canonical keys, stable partitioning, sorted spill runs, merge.

Spill format (say it once, here): a *run* is a file of pickle (protocol 5) frames, each frame a
list of up to `BLOCK_RECORDS` tuples `(canonical_key, key, value)` sorted by `canonical_key`.
`canonical_key` is the key encoded as compact JSON text with sorted object keys (orjson), so keys
must be JSON-able (str, numbers, bool, None, lists/tuples, dicts); values may be anything
picklable. Grouping and sorting use only the canonical text, so `("a", 1)` and `["a", 1]` are
the same key, and the partition of a key is `crc32(utf8(canonical_key)) % reducers` -- the same in
every process and on every engine, unlike Python's salted `hash()`.

A reducer merges its runs with `heapq.merge`, holding one block per run, and hands each key
group to `reduce` as a lazy iterator, so memory does not grow with the size of a key group.
"""

from __future__ import annotations

import heapq
import io
import itertools
import os
import pickle
import zlib
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from mapreduce.errors import KeyNotSerialisable
from mapreduce.script import Context

BLOCK_RECORDS = 1024
MERGE_FAN_IN = 64
DEFAULT_SPILL_RECORDS = 20_000
_KEY_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
_dumps = orjson.dumps
_first = itemgetter(0)
_value = itemgetter(2)

Record = tuple[str, Any, Any]
RunSource = str | bytes


def canonical_key(key: Any) -> str:
    """The text that identifies, orders and partitions `key`.

    Text rather than orjson's bytes: orjson hands back bytes objects sitting in 4 KiB
    allocations, which made a mapper's buffer of short keys a hundred times its real size.
    Text order equals UTF-8 byte order, so runs sort the same either way.
    """
    try:
        return orjson.dumps(key, option=_KEY_OPTIONS).decode()
    except TypeError as exc:
        raise KeyNotSerialisable(
            f"key {key!r} cannot be used: keys must be JSON-able (str, number, bool, None, "
            f"list/tuple, dict) ({exc})"
        ) from exc


def partition_of(encoded_key: str, partitions: int) -> int:
    return zlib.crc32(encoded_key.encode()) % partitions


def write_run(out: BinaryIO, records: list[Record]) -> None:
    """Write already sorted records as one run."""
    for start in range(0, len(records), BLOCK_RECORDS):
        out.write(pickle.dumps(records[start : start + BLOCK_RECORDS], protocol=5))


class RunReader:
    """Stream the records of one run, holding at most one block of it in memory."""

    # Per-process counters (for the summary and for tests that check the merge streams).
    max_block_seen = 0  # largest block any reader held
    blocks_read = 0

    def __init__(self, source: RunSource) -> None:
        self.source = source

    def __iter__(self) -> Iterator[Record]:
        stream: BinaryIO
        if isinstance(self.source, bytes):
            stream = io.BytesIO(self.source)
        else:
            stream = open(self.source, "rb", buffering=64 * 1024)  # noqa: SIM115
        with stream:
            while True:
                try:
                    block = pickle.load(stream)
                except EOFError:
                    return
                RunReader.blocks_read += 1
                if len(block) > RunReader.max_block_seen:
                    RunReader.max_block_seen = len(block)
                yield from block


class PartitionedSpiller:
    """Buffers one mapper's writes per reducer and spills them as sorted runs.

    When `spill_records` writes are buffered, every partition's buffer is sorted, passed
    through `combine` (if the script has one) and written as a run. `on_run` receives
    `(partition, path)` for every run written.
    """

    def __init__(
        self,
        directory: Path,
        prefix: str,
        partitions: int,
        combine: Callable[..., Any] | None,
        spill_records: int = DEFAULT_SPILL_RECORDS,
    ) -> None:
        self.directory = directory
        self.prefix = prefix
        self.partitions = partitions
        self.combine = combine
        self.spill_records = max(1, spill_records)
        self.buffers: list[list[Record]] = [[] for _ in range(partitions)]
        self.buffered = 0
        self.runs: list[list[str]] = [[] for _ in range(partitions)]
        self.spills = 0
        self.combine_key: Any = None  # the key being combined, for error reports

    def write(self, key: Any, value: Any) -> None:
        try:
            encoded = _dumps(key, option=_KEY_OPTIONS).decode()
        except TypeError:
            encoded = canonical_key(key)  # raises KeyNotSerialisable with the explanation
        self.buffers[zlib.crc32(encoded.encode()) % self.partitions].append((encoded, key, value))
        self.buffered += 1
        if self.buffered >= self.spill_records:
            self.spill()

    def spill(self) -> None:
        if not self.buffered:
            return
        buffers = self.buffers
        self.buffers = [[] for _ in range(self.partitions)]
        self.buffered = 0
        for buffer in buffers:
            buffer.sort(key=_first)
        if self.combine is not None:
            buffers = self._combined(buffers)
        for partition, buffer in enumerate(buffers):
            if not buffer:
                continue
            path = self.directory / f"{self.prefix}-r{partition}-{self.spills}.run"
            with open(path, "wb") as out:
                write_run(out, buffer)
            self.runs[partition].append(str(path))
        self.spills += 1

    def _combined(self, buffers: list[list[Record]]) -> list[list[Record]]:
        out: list[list[Record]] = [[] for _ in range(self.partitions)]

        def emit(key: Any, value: Any) -> None:
            encoded = canonical_key(key)
            out[zlib.crc32(encoded.encode()) % self.partitions].append((encoded, key, value))

        context = Context(emit)
        combine = self.combine
        for buffer in buffers:
            for key, values in group_records(buffer):
                self.combine_key = key
                combine(key, values, context)
        self.combine_key = None
        for buffer in out:
            buffer.sort(key=_first)
        return out


def group_records(records: Iterable[Record]) -> Iterator[tuple[Any, Iterator[Any]]]:
    """Group sorted records by canonical key: `(key, lazy iterator over values)`."""
    for _encoded, group in itertools.groupby(records, key=_first):
        first = next(group)
        # The group is consumed lazily, once, by whoever iterates the values: that is the point.
        yield first[1], itertools.chain((first[2],), map(_value, group))  # noqa: B031


def merge_runs(sources: list[RunSource], scratch: Path | None = None) -> Iterator[Record]:
    """Merge sorted runs into one sorted stream.

    With more than `MERGE_FAN_IN` file runs, groups of them are first merged into new runs in
    `scratch`, so a reducer never holds more than `MERGE_FAN_IN` files open at once.
    """
    sources = list(sources)
    level = 0
    while len(sources) > MERGE_FAN_IN and scratch is not None:
        merged: list[RunSource] = []
        for index in range(0, len(sources), MERGE_FAN_IN):
            batch = sources[index : index + MERGE_FAN_IN]
            path = scratch / f"merge-{level}-{index // MERGE_FAN_IN}.run"
            with open(path, "wb", buffering=256 * 1024) as out:
                block: list[Record] = []
                for record in heapq.merge(*(RunReader(s) for s in batch), key=_first):
                    block.append(record)
                    if len(block) >= BLOCK_RECORDS:
                        out.write(pickle.dumps(block, protocol=5))
                        block = []
                if block:
                    out.write(pickle.dumps(block, protocol=5))
            for source in batch:
                if isinstance(source, str) and source.startswith(str(scratch)):
                    os.unlink(source)
            merged.append(str(path))
        sources = merged
        level += 1
    return heapq.merge(*(RunReader(s) for s in sources), key=_first)
