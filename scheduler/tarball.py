"""Code tarballs: the one place that decides whether a job's `.tar.gz` is safe, and extracts it.

Used by the dashboard's upload form (dashboard.tarballs), the scheduler's `store_tarball`
and the local runner's extraction (and by any worker that unpacks job code).

A tarball is untrusted input (anyone with a dashboard account uploads one). It is read ONCE,
as a stream (`tarfile` mode `r|gz`), and every limit is enforced as it streams: a member is
judged by its header before any of its bytes are decompressed, so a small archive declaring a
4 GiB member is refused at once, and decompression stops at the first refusal. Refused, with
the member's name in the message:
- anything but regular files and directories: symbolic and hard links (jobs do not need
  them, and link chains are how CVE-2025-4517 escaped `tarfile`'s own filter), devices,
  FIFOs, sparse and other special members;
- absolute names, `..` components, drive letters, backslashes, NUL, duplicate names;
- more than `max_members` members, more than `max_bytes` declared or decompressed bytes, or a
  decompressed/compressed ratio over `max_ratio` (past the first MiB);
- anything that is not a readable gzip tar.
`safe_extract` writes members as they pass, with `O_NOFOLLOW | O_EXCL` opens into a fresh
directory; on any refusal it removes what it wrote, so a rejected tarball leaves nothing.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

from scheduler.errors import TarballError

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_MAX_RATIO = 200
RATIO_FLOOR = 1024 * 1024
CHUNK = 256 * 1024


class _Counted(io.RawIOBase):
    """The decompressed stream, counted: refuses past `max_bytes` or the ratio limit."""

    def __init__(self, data: bytes, max_bytes: int, max_ratio: int) -> None:
        self.gz = gzip.GzipFile(fileobj=io.BytesIO(data))  # decompresses only what is read
        self.compressed = max(len(data), 1)
        self.total = 0
        # Tar headers and padding are decompressed too: allow for them over the declared sizes.
        self.max_total = max_bytes + max_bytes // 8 + 64 * 1024
        self.max_ratio = max_ratio

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.gz.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.total += n
        if self.total > self.max_total:
            raise TarballError(f"tarball expands to more than {self.max_total} bytes")
        if self.total > RATIO_FLOOR and self.total > self.max_ratio * self.compressed:
            raise TarballError(
                f"tarball expands more than {self.max_ratio} times its compressed size "
                "(a decompression bomb?)"
            )
        return n


def _name_problem(name: str) -> str | None:
    if not name or "\x00" in name:
        return "has an empty or NUL name"
    if posixpath.isabs(name) or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if "\\" in name:
        return "has a backslash in its name"
    if ".." in name.split("/"):
        return "contains '..'"
    return None


def _type_problem(member: tarfile.TarInfo) -> str | None:
    if member.issym():
        return f"is a symbolic link (to {member.linkname!r}); job tarballs may not contain links"
    if member.islnk():
        return f"is a hard link (to {member.linkname!r}); job tarballs may not contain links"
    if member.ischr() or member.isblk():
        return "is a device file"
    if member.isfifo():
        return "is a FIFO"
    if member.issparse():
        return "is a sparse file"
    if not (member.isreg() or member.isdir()):
        return f"has an unsupported type ({member.type!r})"
    return None


def _walk(
    data: bytes,
    *,
    max_bytes: int,
    max_members: int,
    max_ratio: int,
    on_member: Callable[[tarfile.TarFile, tarfile.TarInfo, str], None] | None = None,
) -> int:
    """Stream through the archive once, checking each member as its header arrives; returns
    the member count. `on_member(archive, member, normalised name)` sees members that passed."""
    if not data.startswith(GZIP_MAGIC):
        raise TarballError(
            "not a gzip file: a code tarball must be a .tar.gz (made with `tar czf`)"
        )
    count, declared = 0, 0
    seen: set[str] = set()
    try:
        stream = _Counted(data, max_bytes, max_ratio)
        with tarfile.open(fileobj=io.BufferedReader(stream, CHUNK), mode="r|") as archive:
            for member in archive:
                count += 1
                name = member.name
                if count > max_members:
                    raise TarballError(f"tarball has more than the limit of {max_members} members")
                problem = _name_problem(name) or _type_problem(member)
                if problem:
                    raise TarballError(f"member {name!r} {problem}")
                declared += max(member.size, 0)
                if declared > max_bytes:
                    raise TarballError(
                        f"tarball expands to more than the limit of {max_bytes} bytes (at member {name!r})"
                    )
                norm = posixpath.normpath(name)
                if norm == ".":
                    continue
                if norm in seen:
                    raise TarballError(f"member {name!r} appears twice")
                seen.add(norm)
                if on_member:
                    on_member(archive, member, norm)
    except TarballError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise TarballError(f"corrupt or truncated tarball: {exc}") from exc
    return count


def validate_tarball(
    data: bytes,
    *,
    max_compressed: int,
    max_bytes: int,
    max_members: int,
    max_ratio: int = DEFAULT_MAX_RATIO,
) -> int:
    """Check an upload before storing it; returns the member count."""
    if len(data) > max_compressed:
        raise TarballError(
            f"tarball is {len(data)} bytes, more than the upload limit of {max_compressed} bytes"
        )
    return _walk(data, max_bytes=max_bytes, max_members=max_members, max_ratio=max_ratio)


def safe_extract(
    data: bytes,
    dest: Path,
    *,
    max_bytes: int,
    max_members: int,
    max_ratio: int = DEFAULT_MAX_RATIO,
) -> None:
    """Check and extract `data` into the existing, empty directory `dest` in one pass."""
    dest = Path(dest)
    root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)

    def extract(archive: tarfile.TarFile, member: tarfile.TarInfo, norm: str) -> None:
        parts = norm.split("/")
        parent = _makedirs(root, parts[:-1])
        try:
            if member.isdir():
                with contextlib.suppress(FileExistsError):
                    os.mkdir(parts[-1], 0o755, dir_fd=parent)
                st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise TarballError(f"member {member.name!r} clashes with a file")
                return
            mode = 0o755 if member.mode & 0o111 else 0o644
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(parts[-1], flags, mode, dir_fd=parent)
            except FileExistsError:
                raise TarballError(f"member {member.name!r} appears twice") from None
            source = archive.extractfile(member)
            with os.fdopen(fd, "wb") as out:
                if source is not None:
                    shutil.copyfileobj(source, out, CHUNK)
        finally:
            if parent != root:
                os.close(parent)

    try:
        _walk(
            data,
            max_bytes=max_bytes,
            max_members=max_members,
            max_ratio=max_ratio,
            on_member=extract,
        )
    except BaseException:
        for child in dest.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    child.unlink()
        raise
    finally:
        os.close(root)


def _makedirs(root: int, parts: list[str]) -> int:
    """Descriptor of root/parts..., creating real directories; never follows a link."""
    fd = root
    for part in parts:
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o755, dir_fd=fd)
        try:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        except (NotADirectoryError, OSError) as exc:
            raise TarballError(f"{'/'.join(parts)!r} clashes with a file in the tarball") from exc
        finally:
            if fd != root:
                os.close(fd)
        fd = child
    return fd
