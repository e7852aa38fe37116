"""A directory as a blob store: the embedded default.

Atomicity comes from writing to a temporary file in the same directory and renaming it over
the target; `fsync` before the rename makes a stored object survive a machine crash too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import ConfigError, ObjectNotFound, StoreError
from pipeline.stores.base import BlobStore, ObjectInfo

TMP_MARK = ".tmp-"


class LocalStore(BlobStore):
    def __init__(self, url: str, root: str, setting: str = "store URL") -> None:
        self.url = url
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(setting, f"cannot create directory {self.root}: {exc.strerror}") from exc
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise ConfigError(setting, f"directory {self.root} is not readable and writable")

    def _path(self, key: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise StoreError(f"invalid key {key!r}")
        return self.root.joinpath(*parts)

    def _atomic_write(self, key: str, write) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_MARK, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            with _suppress_oserror():
                os.unlink(tmp)
            raise

    def put(self, key: str, data: bytes) -> None:
        self._atomic_write(key, lambda out: out.write(data))

    def put_file(self, key: str, path: str) -> None:
        def copy(out: BinaryIO) -> None:
            with open(path, "rb") as src:
                while chunk := src.read(1024 * 1024):
                    out.write(chunk)

        self._atomic_write(key, copy)

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(f"{self.url}: no object {key!r}") from exc

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only the directory that can hold the prefix, then filter by the remainder.
        head, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*[p for p in head.split("/") if p]) if head else self.root
        if not start.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            for name in sorted(filenames):
                if name.startswith(TMP_MARK):
                    continue
                key = rel_dir + name
                if key.startswith(prefix):
                    yield ObjectInfo(key, os.path.getsize(os.path.join(dirpath, name)))

    def list_prefixes(self, prefix: str = "") -> Iterator[str]:
        base = self.root.joinpath(*[p for p in prefix.split("/") if p]) if prefix else self.root
        if not base.is_dir():
            return
        for entry in sorted(os.scandir(base), key=lambda e: e.name):
            if entry.is_dir():
                yield f"{prefix}{entry.name}/"

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"{self.url}: directory is not writable")


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, value, tb) -> bool:
        return kind is not None and issubclass(kind, OSError)
