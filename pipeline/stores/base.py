"""The blob store contract: a flat namespace of `/`-separated keys holding bytes.

Every backend gives the same guarantees, which the rest of the pipeline relies on:
- `put` and `put_file` are atomic: a reader sees the old object, the new one, or nothing,
  never a half-written object.
- `list` yields every key under a prefix, in key order, paging internally.
- `list_prefixes` yields the immediate "sub-directories" under a prefix, so that a filter can
  prune whole partitions without listing what it will not read.
"""

from __future__ import annotations

import abc
import dataclasses
import shutil
from collections.abc import Iterator
from typing import BinaryIO

from pipeline.errors import StoreError

TMP_MARK = ".tmp-"
"""Names starting with this are a local store's half-written files; no key may use it."""


def validate_key(key: str) -> str:
    """Reject keys that would mean different things on different backends.

    A directory store cannot hold `a/` and `a` at once, and `..` would escape it, so every
    backend refuses empty components, leading or trailing `/`, `.`/`..` and the temp-file mark.
    """
    parts = key.split("/") if isinstance(key, str) else [""]
    if not key or any(p in ("", ".", "..") or p.startswith(TMP_MARK) for p in parts):
        raise StoreError(f"invalid key {key!r}: use non-empty '/'-separated names")
    if "\x00" in key:
        raise StoreError(f"invalid key {key!r}: NUL character")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix is any string; `list_prefixes` needs it empty or ending in '/'."""
    if prefix.startswith("/"):
        raise StoreError(f"invalid prefix {prefix!r}: keys never start with '/'")
    return prefix


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    # When the object was last written (time.time() seconds); 0.0 when the backend did not
    # say. Not part of equality: two listings of the same objects compare equal.
    modified: float = dataclasses.field(default=0.0, compare=False)


class BlobStore(abc.ABC):
    url: str

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` atomically, replacing any existing object."""

    @abc.abstractmethod
    def put_file(self, key: str, path: str) -> None:
        """Store the file at `path` under `key` atomically (multipart where large)."""

    def adopt_file(self, key: str, path: str) -> None:
        """`put_file` for a file its owner never writes again (a sealed spool file): a store
        may then keep the file itself rather than a copy (the local store links it)."""
        self.put_file(key, path)

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Return a readable binary stream; raises ObjectNotFound."""

    def get(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    def get_file(self, key: str, path: str) -> None:
        """Download `key` to `path` (written in place; callers rename if they need atomicity)."""
        with self.open(key) as stream, open(path, "wb") as out:
            shutil.copyfileobj(stream, out, 1024 * 1024)

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with `prefix`, sorted by key."""

    @abc.abstractmethod
    def list_prefixes(self, prefix: str = "") -> Iterator[str]:
        """Yield `prefix + name + "/"` for each immediate sub-directory under `prefix`.

        `prefix` must be empty or end with "/".
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; deleting a missing key is not an error."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    def check(self) -> None:
        """Raise StoreError/ConfigError when the store is unusable (for health checks)."""
        return None

    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
