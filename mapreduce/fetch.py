"""Getting an input file to a mapper: read in place, from the download cache, or download.

- `file://` store: read the object in place (it is already local; nothing is copied).
- remote store (`s3://`): download into `<data-dir>/<key>` unless a file of the listed size is
  already there, writing to a temporary name and renaming so a killed job never leaves a
  half-downloaded file that a later `--local-only` run would trust.
- `--local-only`: read `<data-dir>/<key>`; the store is never contacted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import BinaryIO

from pipeline.stores.base import TMP_MARK, BlobStore

log = logging.getLogger(__name__)


@dataclasses.dataclass
class OpenedInput:
    stream: BinaryIO
    cached_path: str | None  # the file in the data dir, when there is one (for --delete-data)
    downloaded: bool


def is_remote(store: BlobStore) -> bool:
    return not store.url.startswith("file://")


def open_input(
    store: BlobStore | None, key: str, size: int, data_dir: str, local_only: bool
) -> OpenedInput:
    """Return a readable binary stream of the object `key` (see the module docstring)."""
    cached = Path(data_dir, *key.split("/"))
    if local_only or store is None:
        return OpenedInput(open(cached, "rb"), str(cached), False)  # noqa: SIM115
    if not is_remote(store):
        return OpenedInput(store.open(key), None, False)
    downloaded = False
    if not (cached.is_file() and cached.stat().st_size == size):
        cached.parent.mkdir(parents=True, exist_ok=True)
        # TMP_MARK: a leftover from a killed job is never listed by a later --local-only run.
        partial = cached.with_name(f"{TMP_MARK}{os.getpid()}-{cached.name}")
        try:
            store.get_file(key, str(partial))
            os.replace(partial, cached)
        finally:
            if partial.exists():
                partial.unlink()
        downloaded = True
        log.debug("downloaded %s to %s", key, cached)
    return OpenedInput(open(cached, "rb"), str(cached), downloaded)  # noqa: SIM115
