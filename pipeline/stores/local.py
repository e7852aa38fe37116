"""A directory as a blob store: the embedded default.

Atomicity comes from writing to a temporary file in the same directory and renaming it over
the target; `fsync` of the file before the rename and of the directory after it makes a stored
object survive a machine crash too. Directories are created on demand and removed again when
their last object is deleted, so `list_prefixes` shows the same "directories" as S3 would.

Symbolic links are never followed below the root (the root itself may be one): reading opens
every component with `O_NOFOLLOW`, listing skips links and anything that is not a regular
file or directory, and a write whose directory resolves outside the root is refused. A link
planted in a store (the public one is served to anyone) cannot expose a file elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import ConfigError, ObjectNotFound, StoreError
from pipeline.stores.base import TMP_MARK, BlobStore, ObjectInfo, validate_key, validate_prefix

__all__ = ["LocalStore", "TMP_MARK"]

_FILE_MODE = 0o644


class LocalStore(BlobStore):
    def __init__(self, url: str, root: str, setting: str = "store URL") -> None:
        self.url = url
        self.setting = setting
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:
            raise ConfigError(setting, f"{self.root} exists and is not a directory") from exc
        except OSError as exc:
            raise ConfigError(
                setting, f"cannot create directory {self.root}: {exc.strerror}"
            ) from exc
        # Readable is enough to open a store (a job sees the published store read-only);
        # `check` and every write say so when it is not writable.
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise ConfigError(setting, f"directory {self.root} is not readable")
        self._real_root = os.path.realpath(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def _open_nofollow(self, key: str) -> int:
        """A read-only descriptor of `key`'s regular file, reached without following any link
        below the root; ObjectNotFound for a missing key, a link or anything not a file."""
        parts = validate_key(key).split("/")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts[:-1]:
                child = os.open(
                    part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
                os.close(fd)
                fd = child
            found = os.open(
                parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd
            )
        except OSError as exc:
            raise ObjectNotFound(f"{self.url}: no object {key!r}") from exc
        finally:
            os.close(fd)
        if not stat.S_ISREG(os.fstat(found).st_mode):
            os.close(found)
            raise ObjectNotFound(f"{self.url}: no object {key!r}")
        return found

    def _inside(self, directory: Path) -> bool:
        real = os.path.realpath(directory)
        return real == self._real_root or real.startswith(self._real_root + os.sep)

    def _atomic_write(
        self, key: str, write: Callable[[BinaryIO], None], *, link_from: str | None = None
    ) -> None:
        target = self._path(key)
        # A concurrent delete may remove the (then empty) parent between mkdir and mkstemp.
        for attempt in range(5):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if not self._inside(target.parent):
                    raise StoreError(
                        f"{self.url}: cannot store {key!r}: a parent is a symbolic link"
                    )
                fd, tmp = tempfile.mkstemp(prefix=TMP_MARK, dir=target.parent)
                break
            except FileNotFoundError:
                if attempt == 4:
                    raise
            except (NotADirectoryError, FileExistsError) as exc:
                raise StoreError(
                    f"{self.url}: cannot store {key!r}: a parent is an object"
                ) from exc

        try:
            if link_from is not None:  # the file itself under the temporary name (see adopt_file)
                os.close(fd)
                os.unlink(tmp)
                os.link(link_from, tmp)
            else:
                with os.fdopen(fd, "wb") as out:
                    os.fchmod(out.fileno(), _FILE_MODE)
                    write(out)
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, target)
        except IsADirectoryError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StoreError(f"{self.url}: cannot store {key!r}: keys exist below it") from exc
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(target.parent)

    def put(self, key: str, data: bytes) -> None:
        self._atomic_write(key, lambda out: out.write(data))

    def put_file(self, key: str, path: str) -> None:
        def copy(out: BinaryIO) -> None:
            with open(path, "rb") as src:
                while chunk := src.read(1024 * 1024):
                    out.write(chunk)

        self._atomic_write(key, copy)

    def adopt_file(self, key: str, path: str) -> None:
        """Store a file its owner never writes again as a second name of that file (a hard
        link: ingest hands over each sealed, fsync'd spool file this way instead of copying
        every byte it received once more); a copy when a link cannot be made (another file
        system, a store that forbids links)."""
        try:
            if os.stat(path).st_mode & 0o777 == _FILE_MODE:
                self._atomic_write(key, lambda out: None, link_from=path)
                return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
                raise
        self.put_file(key, path)

    def open(self, key: str) -> BinaryIO:
        return os.fdopen(self._open_nofollow(key), "rb")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Walk in key order (as S3 lists), entering only directories that can match."""
        validate_prefix(prefix)
        yield from self._walk(self.root, "", prefix)

    def _walk(self, directory: Path, rel: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return  # removed by a concurrent delete
        # Sort as the keys sort: a directory `a` holds keys `a/...`, which sort after `a-b`.
        named = []
        for entry in entries:
            if entry.name.startswith(TMP_MARK):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                if not is_dir and not entry.is_file(follow_symlinks=False):
                    continue  # links, FIFOs, sockets, devices are not objects
            except OSError:
                continue
            named.append((entry.name + "/" if is_dir else entry.name, entry, is_dir))
        named.sort(key=lambda item: item[0])
        for name, entry, is_dir in named:
            key = rel + name
            if is_dir:
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(Path(entry.path), key, prefix)
            elif key.startswith(prefix):
                try:
                    stat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted while listing
                yield ObjectInfo(key, stat.st_size, stat.st_mtime)

    def list_prefixes(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        if prefix and not prefix.endswith("/"):
            raise StoreError(f"list_prefixes needs a prefix ending in '/', got {prefix!r}")
        base = self.root.joinpath(*prefix.split("/")[:-1]) if prefix else self.root
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(TMP_MARK):
                yield f"{prefix}{entry.name}/"

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return  # a "directory" is not an object, as on S3
        # Remove parents left empty, so listings match an object store's.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def exists(self, key: str) -> bool:
        try:
            os.close(self._open_nofollow(key))
        except ObjectNotFound:
            return False
        return True

    def check(self) -> None:
        if not self.root.is_dir():
            raise ConfigError(self.setting, f"directory {self.root} does not exist")
        try:
            fd, tmp = tempfile.mkstemp(prefix=TMP_MARK, dir=self.root)
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            raise ConfigError(
                self.setting, f"directory {self.root} is not writable: {exc.strerror}"
            ) from exc


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
