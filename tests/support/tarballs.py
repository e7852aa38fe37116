"""Job code tarballs for the tests, built in memory with tarfile (one builder for the suite).

The bytes are the same on every call (member and gzip times are 0), so a test may compare or
hash them.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterable
from typing import Any

RUN_SH = "#!/bin/bash\nmkdir -p output\necho hello > output/result.txt\n"


def build_tar(entries: Iterable[tuple[dict[str, Any], bytes | None]]) -> bytes:
    """A gzip tar of (TarInfo fields, content or None) entries: any member type or header."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for fields, content in entries:
            fields = dict(fields)
            info = tarfile.TarInfo(fields.pop("name"))
            for key, value in fields.items():
                setattr(info, key, value)
            if content is not None:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
            else:
                archive.addfile(info)
    return gzip.compress(buffer.getvalue(), mtime=0)


def make_tarball(
    files: dict[str, str | bytes] | None = None,
    *,
    unsafe: str | None = None,
    symlink: tuple[str, str] | None = None,
) -> bytes:
    """A gzip tar holding `files` (executable; default: a run.sh that writes output/);
    `unsafe` adds a member with that (bad) name, `symlink` a (name, target) link."""
    files = files if files is not None else {"run.sh": RUN_SH}
    entries: list[tuple[dict[str, Any], bytes | None]] = [
        ({"name": name, "mode": 0o755}, content.encode() if isinstance(content, str) else content)
        for name, content in files.items()
    ]
    if unsafe:
        entries.append(({"name": unsafe}, b"bad"))
    if symlink:
        entries.append(
            ({"name": symlink[0], "type": tarfile.SYMTYPE, "linkname": symlink[1]}, None)
        )
    return build_tar(entries)


def cve_2025_4517_tarball() -> bytes:
    """The pattern of CVE-2025-4517: a chain of symlinks whose combined path leaves the
    directory (each link looks harmless on its own), a hard link through the chain, then a
    regular file written through the hard link, overwriting a file outside."""
    depth = "d" * 50
    entries: list[tuple[dict[str, Any], bytes | None]] = [
        ({"name": depth, "type": tarfile.DIRTYPE}, None)
    ]
    entries.append(({"name": "l0", "type": tarfile.SYMTYPE, "linkname": depth}, None))
    entries.append(({"name": "l0/up", "type": tarfile.SYMTYPE, "linkname": ".."}, None))
    entries.append(
        ({"name": "esc", "type": tarfile.SYMTYPE, "linkname": "l0/up/../victim.txt"}, None)
    )
    entries.append(({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "esc"}, None))
    entries.append(({"name": "hard"}, b"overwritten by the tarball\n"))
    return build_tar(entries)
