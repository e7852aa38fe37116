"""A blob store in this process's memory, `memory://name`: for tests and single-process use.

The whole contract with none of the I/O. It refuses what the directory store refuses (a key
below an object, `a/b` beside `a`, and the reverse), so code that works on it works on the
embedded default too. Every `memory://` URL with the same name opened in one process is the
same store, shared by its threads (one lock guards it). No other process shares it (a fork
gets a copy that goes its own way), and it is gone when the process ends.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

from pipeline.errors import ObjectNotFound, StoreError
from pipeline.stores.base import BlobStore, ObjectInfo, validate_key, validate_prefix


class _StoreState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, tuple[bytes, float]] = {}  # key -> (body, time written)


_stores: dict[str, _StoreState] = {}
_stores_lock = threading.Lock()


def _state(name: str) -> _StoreState:
    with _stores_lock:
        return _stores.setdefault(name, _StoreState())


class MemoryStore(BlobStore):
    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self._state = _state(name)

    def put(self, key: str, data: bytes) -> None:
        validate_key(key)
        body = bytes(data)
        with self._state.lock:
            objects = self._state.objects
            parents = key.split("/")[:-1]
            if any("/".join(parents[: i + 1]) in objects for i in range(len(parents))):
                raise StoreError(f"{self.url}: cannot store {key!r}: a parent is an object")
            below = key + "/"
            if any(other.startswith(below) for other in objects):
                raise StoreError(f"{self.url}: cannot store {key!r}: keys exist below it")
            objects[key] = (body, time.time())

    def put_file(self, key: str, path: str) -> None:
        with open(path, "rb") as source:
            data = source.read()
        self.put(key, data)

    def open(self, key: str) -> BinaryIO:
        validate_key(key)
        with self._state.lock:
            found = self._state.objects.get(key)
        if found is None:
            raise ObjectNotFound(f"{self.url}: no object {key!r}")
        return io.BytesIO(found[0])

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        with self._state.lock:
            items = [(k, len(v[0]), v[1]) for k, v in self._state.objects.items()]
        for key, size, modified in sorted(items):
            if key.startswith(prefix):
                yield ObjectInfo(key, size, modified)

    def list_prefixes(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        if prefix and not prefix.endswith("/"):
            raise StoreError(f"list_prefixes needs a prefix ending in '/', got {prefix!r}")
        with self._state.lock:
            keys = list(self._state.objects)
        rests = [k[len(prefix) :] for k in keys if k.startswith(prefix)]
        names = {rest.split("/", 1)[0] for rest in rests if "/" in rest}
        yield from (f"{prefix}{name}/" for name in sorted(names))

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._state.lock:
            self._state.objects.pop(key, None)

    def exists(self, key: str) -> bool:
        validate_key(key)
        with self._state.lock:
            return key in self._state.objects
