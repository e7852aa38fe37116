"""Per-partition lz4 frame writers that stream one batch's output to temporary files.

Each output object of a batch is one lz4 frame file written under a private temporary
directory; nothing reaches a store until `finish()` hands back the finished files, so a crash
mid-batch leaves no partial object behind (the store's put is atomic besides).

At most `max_open` files are open at once, whatever the number of partitions a batch touches
(a client chooses the partition through the URL, so a batch may name thousands): the least
recently written one is closed when another is needed. A partition written again after its
file was closed gets a further lz4 frame appended to the same file, and `finish()` turns such
a file back into the single frame every reader expects (streaming, in bounded memory), so a
batch still makes exactly one object per partition, whatever order its records come in.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import tempfile

import lz4.frame

#: Open lz4 writers per batch; each holds a compression context and buffers (~100 KB).
DEFAULT_MAX_OPEN = 64
#: Bytes decompressed at a time when joining the frames of a reopened partition.
REWRITE_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class FinishedObject:
    key: str
    path: str
    lines: int


@dataclasses.dataclass
class _File:
    path: str
    lines: int = 0
    frames: int = 0


class PartitionWriters:
    def __init__(self, directory: str | None = None, max_open: int = DEFAULT_MAX_OPEN) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="convert-", dir=directory)
        self.max_open = max(1, max_open)
        self._open: collections.OrderedDict[str, lz4.frame.LZ4FrameFile] = collections.OrderedDict()
        self._files: dict[str, _File] = {}

    def write(self, key: str, line: bytes) -> None:
        handle = self._open.get(key)
        if handle is None:
            handle = self._reopen(key)
        else:
            self._open.move_to_end(key)
        handle.write(line)
        self._files[key].lines += 1

    def _reopen(self, key: str) -> lz4.frame.LZ4FrameFile:
        while len(self._open) >= self.max_open:
            _evicted, old = self._open.popitem(last=False)
            old.close()
        entry = self._files.get(key)
        if entry is None:
            entry = self._files[key] = _File(
                os.path.join(self._tmp.name, f"{len(self._files):06d}.lz4")
            )
        handle = lz4.frame.open(entry.path, "ab")  # a new frame after any earlier ones
        entry.frames += 1
        self._open[key] = handle
        return handle

    @property
    def open_files(self) -> int:
        return len(self._open)

    def finish(self) -> list[FinishedObject]:
        """Close every writer; the files stay until `cleanup()`. Sorted by key."""
        self._close_all()
        finished = []
        for key, entry in sorted(self._files.items()):
            if entry.frames > 1:
                _join_frames(entry.path)
                entry.frames = 1
            finished.append(FinishedObject(key, entry.path, entry.lines))
        return finished

    def _close_all(self) -> None:
        while self._open:
            _key, handle = self._open.popitem(last=False)
            handle.close()

    def cleanup(self) -> None:
        self._close_all()
        self._files.clear()
        self._tmp.cleanup()

    def __enter__(self) -> PartitionWriters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _join_frames(path: str) -> None:
    """Rewrite a file of concatenated lz4 frames as one frame with the same content."""
    joined = path + ".joined"
    with lz4.frame.open(path, "rb") as source, lz4.frame.open(joined, "wb") as target:
        while chunk := source.read(REWRITE_CHUNK):
            target.write(chunk)
    os.replace(joined, path)
