"""The publish step's raw-data rules (scheduler.publish_scan) and its output walk
(scheduler.publish), on files made here; the attacks as real jobs are in
test_scheduler_sandbox.py."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from scheduler.publish import OutputMissing, stage_directory
from scheduler.publish_scan import CHUNK, Refused, Scanner

SEEN = "0b4cd4b2-6a3d-4c3e-9f1e-2f0f2f6c1a10"
PING = json.dumps({"ver": 4, "info": {"reason": "saved-session"}, "histograms": {"A": [1]}})


def scan(tmp_path: Path, data: bytes, **limits) -> Refused | None:
    path = tmp_path / "f"
    path.write_bytes(data)
    try:
        Scanner(lambda ids: {i for i in ids if i == SEEN}, **limits).scan_file(path, "f")
    except Refused as exc:
        return exc
    return None


def tar_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        b"reason,os,count\nsaved-session,WINNT,12\n" * 1000,
        json.dumps({"info": "only one of the keys", "counts": {"a": 1}}).encode(),
        json.dumps({"histograms": {"GC_MS": [1, 2, 3]}, "channel": "release"}).encode(),
        json.dumps({"info": {"histograms": "nested, not siblings"}}).encode(),
        json.dumps({"payload": 1, "note": "clientId is a value here", "x": "environment"}).encode(),
        b"id=11111111-2222-3333-4444-555555555555 (not a docId the pipeline saw)\n",
        b'["saved-session", "Firefox", "release"]\t123\n',
        gzip.compress(b"a,b\n1,2\n"),
    ],
    ids=["csv", "info-only", "histograms-only", "nested", "values", "unseen-uuid", "mr", "gzip"],
)
def test_aggregates_pass(tmp_path, data):
    assert scan(tmp_path, data) is None


@pytest.mark.parametrize(
    "data, rule",
    [
        (f"{SEEN}\t{{}}\n".encode(), "raw-record-line"),
        (f'  "{SEEN}"   [1]\n'.encode(), "raw-record-line"),
        (f"client {SEEN.upper()} had 3".encode(), "docid-seen"),
        (b"x" * (CHUNK - 10) + SEEN.encode(), "docid-seen"),  # split across two reads
        (PING.encode(), "submission-json"),
        (
            b'{"\\u0069nfo": 1, "pad": "' + b"y" * 2 * CHUNK + b'", "histograms": 2}',
            "submission-json",
        ),
        (b'[{"payload": {}, "environment": {}}]', "submission-json"),
        (b'{"clientId": "c", "deep": {"a": [1, {"b": 2}]}, "payload": 0}', "submission-json"),
        (b"TPR1" + bytes(22) + b"/submit/telemetry/x", "spool-record"),
        (bz2.compress(PING.encode()), "submission-json"),
        (lzma.compress(PING.encode()), "submission-json"),
        (gzip.compress(tar_of("a/b.json.bz2", bz2.compress(PING.encode()))), "submission-json"),
        (zip_of("inner.tar", tar_of("x.json", PING.encode())), "submission-json"),
        (b"\x1f\x8b" + os.urandom(200), "unreadable"),
    ],
    ids=[
        "line",
        "quoted-line",
        "seen",
        "seen-split",
        "ping",
        "escaped-spread",
        "unified",
        "deep",
        "spool",
        "bz2",
        "xz",
        "tgz-bz2",
        "zip-tar",
        "corrupt",
    ],
)
def test_raw_data_is_refused_naming_the_rule_and_place(tmp_path, data, rule):
    refusal = scan(tmp_path, data)
    assert refusal is not None and refusal.rule == rule, refusal
    assert refusal.where.startswith("f")


def test_the_member_and_offset_are_named(tmp_path):
    data = gzip.compress(tar_of("dir/raw.txt", b"header\n" + f"{SEEN}\t{{}}\n".encode()))
    refusal = scan(tmp_path, data)
    assert refusal.where == "f > gzip content > dir/raw.txt, byte 7"


def test_decompression_bombs_and_deep_nesting_are_refused(tmp_path):
    bomb = gzip.compress(bytes(20 * 1024 * 1024))
    assert scan(tmp_path, bomb, max_expanded_bytes=10 * 1024 * 1024).rule == "decompression-limit"
    nested = b"plain"
    for _ in range(6):
        nested = gzip.compress(nested)
    assert scan(tmp_path, nested, max_depth=4).rule == "nesting-limit"


def test_encrypted_zip_members_cannot_be_checked_so_are_refused(tmp_path):
    data = bytearray(zip_of("x.txt", b"hello"))
    data[6] |= 0x1  # the local header's "encrypted" flag
    data[data.rfind(b"PK\x01\x02") + 8] |= 0x1  # and the central directory's
    assert scan(tmp_path, bytes(data)).rule == "unreadable"


def test_the_walk_resolves_nothing_and_copies_only_plain_files(tmp_path):
    job = tmp_path / "job"
    (job / "output" / "sub").mkdir(parents=True)
    (job / "output" / "sub" / "ok.txt").write_text("fine")
    (job / "secret").write_text("private")
    os.link(job / "secret", job / "output" / "hard")
    (job / "output" / "link").symlink_to(job / "secret")
    (job / "output" / "dirlink").symlink_to(job)
    os.mkfifo(job / "output" / "fifo")
    staged, refusals = stage_directory(job, "output", tmp_path / "staging", 1000)
    assert [s.rel for s in staged] == ["sub/ok.txt"]
    assert staged[0].path.read_text() == "fine"
    assert {r.path: r.reason.split(" (")[0] for r in refusals} == {
        "dirlink": "is a symbolic link",
        "fifo": "is a FIFO",
        "hard": "is a hard link",
        "link": "is a symbolic link",
    }


def test_an_output_directory_that_is_a_link_is_refused(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "private.txt").write_text("x")
    (job / "output").symlink_to(tmp_path / "elsewhere")
    staged, refusals = stage_directory(job, "output", tmp_path / "staging", 1000)
    assert staged == [] and "symbolic link" in refusals[0].reason
    (job / "real").mkdir()
    (job / "real" / "output").symlink_to(tmp_path / "elsewhere")
    staged, refusals = stage_directory(job, "real/output", tmp_path / "staging2", 1000)
    assert staged == [] and "symbolic link" in refusals[0].reason
    with pytest.raises(OutputMissing):
        stage_directory(job, "missing", tmp_path / "staging3", 1000)


def test_the_json_shape_survives_every_chunk_boundary():
    """Strings, escapes and brackets split at any byte between two reads."""
    from scheduler.publish_scan import _JsonShape

    hit = (
        b'{"a": "x\\"y\\\\", "\\u0069nfo": {"q": "]}"}, "pad": "'
        + b"z" * 100
        + b'", "histograms": [1]}'
    )
    miss = b'{"a": "info\\":", "b": ["histograms", ":"], "info": 1}'
    for doc, expected in ((hit, True), (miss, False)):
        for cut in range(len(doc) + 1):
            shape = _JsonShape()
            assert (shape.feed(doc[:cut]) or shape.feed(doc[cut:])) is expected, cut
