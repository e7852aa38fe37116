"""Upload checks for code tarballs, so a bad upload is an inline form error, not a failed run.

The scheduler's `store_tarball` checks the archive again before storing it; checking here
first lets the form name the problem beside the field and change nothing.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import zlib

from pipeline.errors import PipelineError

GZIP_MAGIC = b"\x1f\x8b"
ALLOWED_SUFFIXES = (".tar.gz", ".tgz")


class TarballError(PipelineError):
    """The upload is not a safe gzip-compressed tar archive; the message says what is wrong."""


def _unsafe_member(member: tarfile.TarInfo) -> str | None:
    name = member.name
    normal = posixpath.normpath(name)
    if name.startswith("/") or normal.startswith("/"):
        return f"{name!r} is an absolute path"
    if normal == ".." or normal.startswith("../") or "/../" in f"/{name}/":
        return f"{name!r} points outside the archive ('..')"
    if member.isdev() or member.isfifo():
        return f"{name!r} is a device or pipe"
    if member.issym() or member.islnk():
        target = member.linkname
        resolved = (
            posixpath.normpath(posixpath.join(posixpath.dirname(normal), target))
            if member.issym()
            else posixpath.normpath(target)
        )
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            return f"{name!r} links outside the archive ({target!r})"
    return None


def check_tarball(filename: str, data: bytes, max_bytes: int) -> None:
    """Raise TarballError unless `data` is a gzip tar with only safe, relative paths."""
    if not filename.lower().endswith(ALLOWED_SUFFIXES):
        raise TarballError("The file name must end in .tar.gz or .tgz.")
    if len(data) > max_bytes:
        raise TarballError(f"The tarball is {len(data):,} bytes; the limit is {max_bytes:,} bytes.")
    if not data:
        raise TarballError("The uploaded file is empty.")
    if not data.startswith(GZIP_MAGIC):
        raise TarballError(
            "This is not a gzip file (the content does not start with the gzip header)."
        )
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = archive.getmembers()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise TarballError(f"This gzip file does not hold a readable tar archive ({exc}).") from exc
    if not members:
        raise TarballError("The archive is empty.")
    for member in members:
        problem = _unsafe_member(member)
        if problem:
            raise TarballError(f"Unsafe archive member: {problem}.")
