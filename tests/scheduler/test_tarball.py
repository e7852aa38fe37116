"""Code tarballs: every unsafe or broken archive is refused, with a message naming the problem."""

from __future__ import annotations

import gzip
import tarfile

import pytest

from scheduler.errors import TarballError
from scheduler.tarball import safe_extract, validate_tarball
from tests.support.tarballs import build_tar, cve_2025_4517_tarball

LIMITS = dict(max_bytes=10_000, max_members=50)


def good() -> bytes:
    return build_tar(
        [
            ({"name": "run.sh"}, b"echo hi\n"),
            ({"name": "lib", "type": tarfile.DIRTYPE}, None),
            ({"name": "lib/x.py"}, b"x = 1\n"),
        ]
    )


def test_a_good_tarball_extracts(tmp_path):
    assert validate_tarball(good(), max_compressed=1_000_000, **LIMITS) == 3
    safe_extract(good(), tmp_path, **LIMITS)
    assert (tmp_path / "run.sh").read_bytes() == b"echo hi\n"
    assert (tmp_path / "lib" / "x.py").read_bytes() == b"x = 1\n"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([({"name": "/etc/cron.d/evil"}, b"x")], "absolute path"),
        ([({"name": "../escape.txt"}, b"x")], "contains '..'"),
        ([({"name": "a/../../escape.txt"}, b"x")], "contains '..'"),
        (
            [({"name": "out", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, None)],
            "is a symbolic link",
        ),
        (
            [({"name": "a/out", "type": tarfile.SYMTYPE, "linkname": "../../x"}, None)],
            "is a symbolic link",
        ),
        (
            [({"name": "inside", "type": tarfile.SYMTYPE, "linkname": "run.sh"}, None)],
            "is a symbolic link",
        ),
        (
            [({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "/etc/passwd"}, None)],
            "is a hard link",
        ),
        (
            [({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../x"}, None)],
            "is a hard link",
        ),
        (
            [
                ({"name": "a"}, b"x"),
                ({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "a"}, None),
            ],
            "is a hard link",
        ),
        ([({"name": "twice"}, b"1"), ({"name": "twice"}, b"2")], "appears twice"),
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
        "symlink-inside",
        "hardlink-abs",
        "hardlink-up",
        "hardlink-inside",
        "duplicate",
        "char-device",
        "block-device",
        "fifo",
        "too-big",
        "too-many",
    ],
)
def test_unsafe_tarball_is_rejected_with_a_clear_message(tmp_path, entries, message):
    data = build_tar(entries)
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
    data = build_tar([({"name": "a"}, bytes(range(256)) * 30)])
    with pytest.raises(TarballError, match="corrupt or truncated"):
        safe_extract(data[: len(data) // 2], tmp_path, **LIMITS)


def test_upload_over_the_compressed_limit_is_rejected():
    with pytest.raises(TarballError, match="more than the upload limit of 100 bytes"):
        validate_tarball(good() + b"\0" * 200, max_compressed=100, **LIMITS)


def test_the_cve_2025_4517_pattern_is_refused_and_writes_nothing(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("original\n")
    dest = tmp_path / "job"
    dest.mkdir()
    data = cve_2025_4517_tarball()
    with pytest.raises(TarballError, match="is a symbolic link"):
        validate_tarball(data, max_compressed=1_000_000, **LIMITS)
    with pytest.raises(TarballError, match="is a symbolic link"):
        safe_extract(data, dest, **LIMITS)
    assert victim.read_text() == "original\n"
    assert list(dest.iterdir()) == []


def declared_4gib_tarball() -> bytes:
    """A ~4 MB gzip whose only member's header declares 4 GiB (followed by 4 MB of zeros)."""
    info = tarfile.TarInfo("huge.bin")
    info.size = 4 * 1024**3
    raw = info.tobuf(format=tarfile.GNU_FORMAT) + bytes(4 * 1024 * 1024)
    return gzip.compress(raw, compresslevel=1)


def test_a_4gib_declared_member_is_refused_at_its_header(tmp_path, monkeypatch):
    """Refused from the header, before its data is decompressed (bench/tarball_refusal.py
    measures the CPU time): the decompressed stream is read only up to the header."""
    import scheduler.tarball as module

    read = []
    original = module._Counted.readinto

    def counting(self, buffer):
        n = original(self, buffer)
        read.append(n)
        return n

    monkeypatch.setattr(module._Counted, "readinto", counting)
    data = declared_4gib_tarball()
    with pytest.raises(TarballError, match="expands to more than the limit of 500000000 bytes"):
        validate_tarball(data, max_compressed=50_000_000, max_bytes=500_000_000, max_members=10)
    assert sum(read) <= 1024 * 1024  # not the 4 MB of zeros, let alone 4 GiB
    with pytest.raises(TarballError, match="expands to more than"):
        safe_extract(data, tmp_path, max_bytes=500_000_000, max_members=10)
    assert list(tmp_path.iterdir()) == []


def test_a_decompression_bomb_is_refused_by_its_ratio(tmp_path):
    data = build_tar([({"name": f"zeros{i}"}, bytes(3 * 1024 * 1024)) for i in range(2)])
    with pytest.raises(TarballError, match="times its compressed size"):
        safe_extract(data, tmp_path, max_bytes=100_000_000, max_members=10)
    assert list(tmp_path.iterdir()) == []
