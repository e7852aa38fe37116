"""Code tarballs: check an upload is a gzip tar, and extract one without letting it escape.

A tarball is untrusted input (anyone with a dashboard account uploads one), so extraction
refuses, with the member's name in the message: absolute paths, `..` components, symlinks or
hard links whose target leaves the extraction directory, device files and FIFOs, more members
or more extracted bytes than the limits, and anything that is not a readable gzip tar. The
checks run over the whole archive *before* anything is written, so a rejected tarball leaves
no files behind.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
import zlib
from pathlib import Path

from scheduler.errors import TarballError

GZIP_MAGIC = b"\x1f\x8b"


def _members(data: bytes) -> list[tarfile.TarInfo]:
    if not data.startswith(GZIP_MAGIC):
        raise TarballError(
            "not a gzip file: a code tarball must be a .tar.gz (made with `tar czf`)"
        )
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            return archive.getmembers()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise TarballError(f"corrupt or truncated tarball: {exc}") from exc


def _inside(path: str) -> bool:
    """True when the normalised relative `path` stays within the extraction root."""
    norm = posixpath.normpath(path)
    return not (norm == ".." or norm.startswith("../") or posixpath.isabs(norm))


def check_members(members: list[tarfile.TarInfo], *, max_bytes: int, max_members: int) -> None:
    """Raise TarballError for the first unsafe member (see the module docstring)."""
    if len(members) > max_members:
        raise TarballError(
            f"tarball has {len(members)} members, more than the limit of {max_members}"
        )
    total = 0
    for member in members:
        name = member.name
        if posixpath.isabs(name) or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
            raise TarballError(f"member {name!r} has an absolute path")
        if ".." in name.replace("\\", "/").split("/"):
            raise TarballError(f"member {name!r} contains '..'")
        if member.ischr() or member.isblk():
            raise TarballError(f"member {name!r} is a device file")
        if member.isfifo():
            raise TarballError(f"member {name!r} is a FIFO")
        if member.issym():
            target = member.linkname
            if posixpath.isabs(target) or not _inside(
                posixpath.join(posixpath.dirname(name), target)
            ):
                raise TarballError(
                    f"member {name!r} is a symlink pointing outside the tarball ({target!r})"
                )
        elif member.islnk():
            target = member.linkname
            if posixpath.isabs(target) or not _inside(target):
                raise TarballError(
                    f"member {name!r} is a hard link pointing outside the tarball ({target!r})"
                )
        elif not (member.isfile() or member.isdir()):
            raise TarballError(f"member {name!r} has an unsupported type ({member.type!r})")
        total += max(member.size, 0)
        if total > max_bytes:
            raise TarballError(
                f"tarball expands to more than the limit of {max_bytes} bytes (at member {name!r})"
            )


def validate_tarball(data: bytes, *, max_compressed: int, max_bytes: int, max_members: int) -> int:
    """Check an upload before storing it; returns the member count."""
    if len(data) > max_compressed:
        raise TarballError(
            f"tarball is {len(data)} bytes, more than the upload limit of {max_compressed} bytes"
        )
    members = _members(data)
    check_members(members, max_bytes=max_bytes, max_members=max_members)
    return len(members)


def safe_extract(data: bytes, dest: Path, *, max_bytes: int, max_members: int) -> None:
    """Extract `data` into the existing directory `dest` after every check has passed."""
    members = _members(data)
    check_members(members, max_bytes=max_bytes, max_members=max_members)
    dest = Path(dest)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            # The "data" filter repeats the checks above in the standard library (defence in
            # depth) and drops set-uid bits and ownership.
            archive.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise TarballError(f"corrupt or truncated tarball: {exc}") from exc
    # Belt and braces: nothing may resolve outside dest (e.g. link chains).
    root = os.path.realpath(dest)
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            real = os.path.realpath(os.path.join(dirpath, name))
            if real != root and not real.startswith(root + os.sep):
                raise TarballError(
                    f"{os.path.relpath(os.path.join(dirpath, name), dest)!r} resolves outside the tarball"
                )
