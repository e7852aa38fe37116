"""Code tarballs: every unsafe or broken archive is refused, with a message naming the problem."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from scheduler.errors import TarballError
from scheduler.tarball import safe_extract, validate_tarball

LIMITS = dict(max_bytes=10_000, max_members=50)


def build(entries) -> bytes:
    """entries: (TarInfo kwargs, content bytes or None)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for fields, content in entries:
            info = tarfile.TarInfo(fields.pop("name"))
            for key, value in fields.items():
                setattr(info, key, value)
            if content is not None:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def good() -> bytes:
    return build(
        [
            ({"name": "run.sh"}, b"echo hi\n"),
            ({"name": "lib", "type": tarfile.DIRTYPE}, None),
            ({"name": "lib/x.py"}, b"x = 1\n"),
            ({"name": "link", "type": tarfile.SYMTYPE, "linkname": "lib/x.py"}, None),
        ]
    )


def test_a_good_tarball_extracts(tmp_path):
    assert validate_tarball(good(), max_compressed=1_000_000, **LIMITS) == 4
    safe_extract(good(), tmp_path, **LIMITS)
    assert (tmp_path / "run.sh").read_bytes() == b"echo hi\n"
    assert (tmp_path / "link").resolve() == (tmp_path / "lib" / "x.py").resolve()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([({"name": "/etc/cron.d/evil"}, b"x")], "absolute path"),
        ([({"name": "../escape.txt"}, b"x")], "contains '..'"),
        ([({"name": "a/../../escape.txt"}, b"x")], "contains '..'"),
        (
            [({"name": "out", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, None)],
            "symlink pointing outside",
        ),
        (
            [({"name": "a/out", "type": tarfile.SYMTYPE, "linkname": "../../x"}, None)],
            "symlink pointing outside",
        ),
        (
            [({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "/etc/passwd"}, None)],
            "hard link pointing outside",
        ),
        (
            [({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../x"}, None)],
            "hard link pointing outside",
        ),
        (
            [({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None)],
            "device file",
        ),
        (
            [({"name": "blk", "type": tarfile.BLKTYPE, "devmajor": 8, "devminor": 0}, None)],
            "device file",
        ),
        ([({"name": "fifo", "type": tarfile.FIFOTYPE}, None)], "FIFO"),
        ([({"name": "big"}, b"0" * 20_000)], "expands to more than the limit of 10000 bytes"),
        ([({"name": f"f{i}"}, b"") for i in range(60)], "more than the limit of 50"),
    ],
    ids=[
        "absolute",
        "dotdot",
        "nested-dotdot",
        "symlink-abs",
        "symlink-up",
        "hardlink-abs",
        "hardlink-up",
        "char-device",
        "block-device",
        "fifo",
        "too-big",
        "too-many",
    ],
)
def test_unsafe_tarball_is_rejected_with_a_clear_message(tmp_path, entries, message):
    data = build(entries)
    with pytest.raises(TarballError, match=message):
        validate_tarball(data, max_compressed=1_000_000, **LIMITS)
    with pytest.raises(TarballError, match=message):
        safe_extract(data, tmp_path, **LIMITS)
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_not_gzip_is_rejected(tmp_path):
    with pytest.raises(TarballError, match="not a gzip file"):
        validate_tarball(b"PK\x03\x04 a zip file", max_compressed=1_000_000, **LIMITS)


def test_gzip_that_is_not_a_tar_is_rejected():
    with pytest.raises(TarballError, match="corrupt or truncated"):
        validate_tarball(
            gzip.compress(b"just text, not a tar archive" * 40), max_compressed=1_000_000, **LIMITS
        )


def test_truncated_tarball_is_rejected(tmp_path):
    data = build([({"name": "a"}, bytes(range(256)) * 30)])
    with pytest.raises(TarballError, match="corrupt or truncated"):
        safe_extract(data[: len(data) // 2], tmp_path, **LIMITS)


def test_upload_over_the_compressed_limit_is_rejected():
    with pytest.raises(TarballError, match="more than the upload limit of 100 bytes"):
        validate_tarball(good() + b"\0" * 200, max_compressed=100, **LIMITS)
