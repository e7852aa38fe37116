"""The key that signs dashboard session cookies and CSRF tokens.

An explicitly configured `TELEMETRY_DASHBOARD_SECRET_KEY` is used as given (set the same one on every
dashboard host behind a load balancer). Without one, the first start makes a random key
(`secrets.token_urlsafe(32)`) and keeps it in `<data_dir>/dashboard-secret-key`, readable by
its owner only (0600); later starts and other worker processes read the same file, so
sessions survive restarts. Deleting the file signs everybody out at the next start.

The file appears complete or not at all: the key is written to a private temporary file in
the same directory, then hard-linked into place, which fails when another process got there
first (that process's key is then used), so workers starting together agree on one key.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
import tempfile
import time
from pathlib import Path

from pipeline.config import secret_key_path
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

SETTING = "TELEMETRY_DASHBOARD_SECRET_KEY"


def load_or_create_secret_key(data_dir: str | os.PathLike) -> str:
    """The generated key of this data directory, made on first use."""
    path = secret_key_path(str(data_dir))
    if path.exists():
        return _read(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        if not _publish(path, key):
            return _read(path)  # another process made it first
    except OSError as exc:
        raise ConfigError(
            SETTING,
            f"not set, and the generated key cannot be stored in {path}: {exc.strerror or exc}; "
            f"set {SETTING} or make the data directory writable",
        ) from exc
    log.warning("%s is not set: generated a random session key and stored it in %s", SETTING, path)
    return key


def _publish(path: Path, key: str) -> bool:
    """Put `key` at `path` atomically (mode 0600); False when the file already exists."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        _write_key(fd, key)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            return _create_exclusively(path, key)  # a file system without hard links
    finally:
        os.unlink(tmp)
    _fsync_dir(path.parent)
    return True


def _create_exclusively(path: Path, key: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    _write_key(fd, key)
    return True


def _write_key(fd: int, key: str) -> None:
    """Write the key to the open file `fd`, on disk before it returns, and close it."""
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    # An empty file can only be seen for an instant on file systems without hard links (the
    # fallback writes in place); anything longer is a damaged file the operator must look at.
    for _attempt in range(20):
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                SETTING, f"not set, and the generated key in {path} cannot be read: {exc.strerror}"
            ) from exc
        if key:
            break
        time.sleep(0.05)
    else:
        raise ConfigError(
            SETTING,
            f"not set, and the generated key file {path} is empty; delete it to make a new key "
            f"(this signs everybody out) or set {SETTING}",
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "%s is readable by other users (mode %o); anyone who reads it can forge sessions. "
            "Run: chmod 600 %s",
            path,
            mode,
            path,
        )
    return key
