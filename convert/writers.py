"""Per-partition lz4 frame writers that stream one batch's output to temporary files.

Each output object of a batch is one lz4 frame file written under a private temporary
directory; nothing reaches a store until `finish()` hands back the finished files, so a crash
mid-batch leaves no partial object behind (the store's put is atomic besides).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import lz4.frame


@dataclasses.dataclass(frozen=True)
class FinishedObject:
    key: str
    path: str
    lines: int


class PartitionWriters:
    def __init__(self, directory: str | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="convert-", dir=directory)
        self._files: dict[str, tuple[lz4.frame.LZ4FrameFile, str]] = {}
        self._lines: dict[str, int] = {}

    def write(self, key: str, line: bytes) -> None:
        entry = self._files.get(key)
        if entry is None:
            path = os.path.join(self._tmp.name, f"{len(self._files):06d}.lz4")
            entry = (lz4.frame.open(path, "wb"), path)
            self._files[key] = entry
            self._lines[key] = 0
        entry[0].write(line)
        self._lines[key] += 1

    def finish(self) -> list[FinishedObject]:
        """Close every writer; the files stay until `cleanup()`. Sorted by key."""
        finished = []
        for key, (handle, path) in sorted(self._files.items()):
            handle.close()
            finished.append(FinishedObject(key, path, self._lines[key]))
        return finished

    def cleanup(self) -> None:
        for handle, _path in self._files.values():
            handle.close()
        self._files.clear()
        self._tmp.cleanup()

    def __enter__(self) -> PartitionWriters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
