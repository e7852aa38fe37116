"""Per-partition lz4 frame writers that stream one batch's output to temporary files.

Each output object of a batch is one lz4 frame file written under a private temporary
directory; nothing reaches a store until `finish()` hands back the finished files, so a crash
mid-batch leaves no partial object behind (the store's put is atomic besides).

At most `max_open` files are open at once, whatever the number of partitions a batch touches
(a client chooses the partition through the URL, so a batch may name thousands): the least
recently written one is closed when another is needed, and when its partition is written
again its lines go to a new part, a separate object whose key is the partition's key with
`--part<N>` before `.lz4`. Records are written in batch order, so reprocessing a batch makes
the same parts with the same keys and overwrites them, as it overwrites whole objects.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import tempfile

import lz4.frame

#: Open lz4 writers per batch; each holds a compression context and buffers (~100 KB).
DEFAULT_MAX_OPEN = 64
PART_MARK = "--part"
_SUFFIX = ".lz4"


@dataclasses.dataclass(frozen=True)
class FinishedObject:
    key: str
    path: str
    lines: int


def part_key(key: str, part: int) -> str:
    """The key of part `part` (0: the partition's own key) of a partition's output."""
    if part == 0:
        return key
    stem = key.removesuffix(_SUFFIX)
    return f"{stem}{PART_MARK}{part}{_SUFFIX}"


@dataclasses.dataclass
class _Part:
    key: str
    path: str
    lines: int = 0


class PartitionWriters:
    def __init__(self, directory: str | None = None, max_open: int = DEFAULT_MAX_OPEN) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="convert-", dir=directory)
        self.max_open = max(1, max_open)
        self._open: collections.OrderedDict[str, lz4.frame.LZ4FrameFile] = collections.OrderedDict()
        self._parts: dict[str, list[_Part]] = {}
        self._count = 0

    def write(self, key: str, line: bytes) -> None:
        handle = self._open.get(key)
        if handle is None:
            handle = self._start_part(key)
        else:
            self._open.move_to_end(key)
        handle.write(line)
        self._parts[key][-1].lines += 1

    def _start_part(self, key: str) -> lz4.frame.LZ4FrameFile:
        while len(self._open) >= self.max_open:
            _evicted, old = self._open.popitem(last=False)
            old.close()
        parts = self._parts.setdefault(key, [])
        path = os.path.join(self._tmp.name, f"{self._count:06d}.lz4")
        self._count += 1
        parts.append(_Part(part_key(key, len(parts)), path))
        handle = lz4.frame.open(path, "wb")
        self._open[key] = handle
        return handle

    @property
    def open_files(self) -> int:
        return len(self._open)

    def finish(self) -> list[FinishedObject]:
        """Close every writer; the files stay until `cleanup()`. Sorted by key."""
        self._close_all()
        finished = [
            FinishedObject(part.key, part.path, part.lines)
            for parts in self._parts.values()
            for part in parts
        ]
        return sorted(finished, key=lambda obj: obj.key)

    def _close_all(self) -> None:
        while self._open:
            _key, handle = self._open.popitem(last=False)
            handle.close()

    def cleanup(self) -> None:
        self._close_all()
        self._parts.clear()
        self._tmp.cleanup()

    def __enter__(self) -> PartitionWriters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
