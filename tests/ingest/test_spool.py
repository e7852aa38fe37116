"""The durable spool: appends, fsync policies, rotation, crash recovery, locking."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from ingest.errors import SpoolClosed, SpoolFull, SpoolLocked, SpoolWriteFailed
from ingest.spool import (
    OPEN_SUFFIX,
    QUARANTINE,
    SEALED_SUFFIX,
    SealedFile,
    Spool,
    key_for,
)
from pipeline.records import encode_record, iter_records
from tests.support.waiting import wait_for_async


def record(i: int, size: int = 100) -> bytes:
    return encode_record(
        1_700_000_000_000 + i, f"/submit/telemetry/{i}", {"N": str(i)}, bytes([i % 256]) * size
    )


def read_all(paths: list[Path]) -> list:
    out = []
    for path in paths:
        with open(path, "rb") as stream:
            out.extend(iter_records(stream, str(path)))
    return out


def make_spool(directory: Path, **kwargs) -> tuple[Spool, list[SealedFile]]:
    sealed: list[SealedFile] = []
    kwargs.setdefault("min_free_bytes", 0)
    spool = Spool(directory, on_sealed=sealed.append, **kwargs)
    return spool, sealed


@pytest.mark.parametrize("policy", ["always", "group", "none"])
async def test_concurrent_appends_never_interleave(tmp_path, policy):
    spool, sealed = make_spool(tmp_path, fsync_policy=policy)
    spool.recover()
    spool.start()
    sizes = [10 + (i * 37) % 5000 for i in range(300)]
    await asyncio.gather(*(spool.append(record(i, size)) for i, size in enumerate(sizes)))
    await spool.close()
    assert len(sealed) == 1 and sealed[0].records == 300
    records = read_all([s.path for s in sealed])
    assert sorted((r.received_ms - 1_700_000_000_000, len(r.body)) for r in records) == list(
        enumerate(sizes)
    )
    assert all(r.body == bytes([int(r.headers["N"]) % 256]) * len(r.body) for r in records)


async def test_group_commit_shares_fsyncs_between_concurrent_requests(tmp_path, monkeypatch):
    calls = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd)))
    spool, _ = make_spool(tmp_path, fsync_policy="group")
    spool.recover()
    await asyncio.gather(*(spool.append(record(i)) for i in range(200)))
    assert 1 <= len(calls) < 200
    await spool.close()


async def test_size_rotation_seals_files_under_the_limit(tmp_path):
    one = len(record(0, 1000))
    spool, sealed = make_spool(tmp_path, max_file_bytes=one * 3 + 10)
    spool.recover()
    for i in range(10):
        await spool.append(record(i, 1000))
    await spool.close()
    assert [s.records for s in sealed] == [3, 3, 3, 1]
    assert all(s.path.stat().st_size == s.size <= one * 3 + 10 for s in sealed)
    assert len({s.key for s in sealed}) == 4
    assert [r.received_ms for r in read_all([s.path for s in sealed])] == [
        1_700_000_000_000 + i for i in range(10)
    ]


async def test_age_rotation_seals_an_idle_file(tmp_path):
    spool, sealed = make_spool(tmp_path, max_age_seconds=0.2, housekeeping_interval=0.05)
    spool.recover()
    spool.start()
    await spool.append(record(1))
    await wait_for_async(lambda: sealed, 20, "the idle file to be sealed")
    assert len(sealed) == 1 and sealed[0].path.suffix == SEALED_SUFFIX and sealed[0].path.exists()
    assert not list(tmp_path.glob(f"*{OPEN_SUFFIX}"))
    await spool.close()


async def test_release_deletes_the_file_and_frees_depth(tmp_path):
    spool, sealed = make_spool(tmp_path)
    spool.recover()
    await spool.append(record(1))
    await spool.rotate()
    assert spool.depth_bytes == sealed[0].size and spool.depth_files == 1
    spool.release(sealed[0])
    assert spool.depth_bytes == 0 and spool.depth_files == 0
    assert not sealed[0].path.exists()
    await spool.close()


async def test_cap_refuses_with_spool_full(tmp_path):
    spool, _ = make_spool(tmp_path, cap_bytes=len(record(0)) * 2)
    spool.recover()
    await spool.append(record(0))
    await spool.append(record(1))
    with pytest.raises(SpoolFull) as caught:
        await spool.append(record(2))
    assert caught.value.reason == "spool_cap"
    await spool.close()


async def test_failed_write_leaves_no_partial_record(tmp_path, monkeypatch):
    spool, sealed = make_spool(tmp_path)
    spool.recover()
    await spool.append(record(1))
    real_writev = os.writev

    def half_then_fail(fd, buffers):
        real_writev(fd, [bytes(buffers[0])[: len(buffers[0]) // 2]])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "writev", half_then_fail)
    with pytest.raises(SpoolWriteFailed) as caught:
        await spool.append(record(2))
    assert caught.value.reason == "write_error"
    assert spool.depth_bytes == len(record(1))
    monkeypatch.setattr(os, "writev", real_writev)
    await spool.append(record(3))
    await spool.close()
    assert [r.headers["N"] for r in read_all([s.path for s in sealed])] == ["1", "3"]


async def test_closed_spool_refuses_appends(tmp_path):
    spool, _ = make_spool(tmp_path)
    spool.recover()
    await spool.close()
    with pytest.raises(SpoolClosed) as caught:
        await spool.append(record(1))
    assert caught.value.reason == "closed"


def test_recover_truncates_torn_tail_and_seals(tmp_path):
    whole = record(1) + record(2) + record(3)
    torn = record(4)[:50]
    leftover = tmp_path / f"20240102-030405-host-1-abc{OPEN_SUFFIX}"
    leftover.write_bytes(whole + torn)
    spool, _ = make_spool(tmp_path)
    [found] = spool.recover()
    assert found.records == 3 and found.size == len(whole)
    assert found.key == "20240102/030405-host-1-abc.batch"
    assert found.path.read_bytes() == whole
    assert not leftover.exists()
    assert spool.depth_bytes == len(whole)


def test_recover_keeps_sealed_files_and_drops_empty_leftovers(tmp_path):
    (tmp_path / f"20240102-000000-h-1-a{SEALED_SUFFIX}").write_bytes(record(1) + record(2))
    (tmp_path / f"20240102-000001-h-1-b{OPEN_SUFFIX}").write_bytes(b"")
    (tmp_path / f"20240102-000002-h-1-c{OPEN_SUFFIX}").write_bytes(record(3)[:10])
    spool, _ = make_spool(tmp_path)
    found = spool.recover()
    assert [(f.key, f.records) for f in found] == [("20240102/000000-h-1-a.batch", 2)]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        f"20240102-000000-h-1-a{SEALED_SUFFIX}"
    ]


def test_recover_quarantines_damage_in_the_middle(tmp_path):
    damaged = bytearray(record(1) + record(2) + record(3))
    damaged[len(record(1)) + 40] ^= 0xFF  # a flipped bit in the second record's body
    name = f"20240102-000000-h-1-a{OPEN_SUFFIX}"
    (tmp_path / name).write_bytes(bytes(damaged))
    spool, _ = make_spool(tmp_path)
    assert spool.recover() == []
    assert (tmp_path / QUARANTINE / name).read_bytes() == bytes(damaged)


def test_second_spool_on_the_same_directory_is_refused(tmp_path):
    first, _ = make_spool(tmp_path)
    first.recover()
    second, _ = make_spool(tmp_path)
    with pytest.raises(SpoolLocked, match="TELEMETRY_SPOOL_DIR"):
        second.recover()


def test_key_for_rejects_foreign_names():
    assert key_for("20240102-030405-host-1-abc") == "20240102/030405-host-1-abc.batch"
    with pytest.raises(ValueError):
        key_for("notes")


async def test_short_writes_are_continued_in_order(tmp_path, monkeypatch):
    real_writev = os.writev

    def at_most_seven_bytes(fd, buffers):
        return real_writev(fd, [bytes(buffers[0])[:7]])

    monkeypatch.setattr(os, "writev", at_most_seven_bytes)
    spool, sealed = make_spool(tmp_path)
    spool.recover()
    await asyncio.gather(*(spool.append(record(i, 30)) for i in range(20)))
    monkeypatch.setattr(os, "writev", real_writev)
    await spool.close()
    assert [int(r.headers["N"]) for r in read_all([s.path for s in sealed])] == list(range(20))


async def test_write_failure_after_rotation_keeps_depth_accurate(tmp_path, monkeypatch):
    spool, sealed = make_spool(tmp_path)
    spool.recover()
    await spool.append(record(1))
    real_writev = os.writev
    monkeypatch.setattr(
        os, "writev", lambda fd, buffers: (_ for _ in ()).throw(OSError(5, "I/O error"))
    )
    pending = asyncio.ensure_future(spool.append(record(2)))
    await asyncio.sleep(0)  # queued for the writer, not written yet
    rotation = asyncio.ensure_future(spool.rotate())
    with pytest.raises(SpoolWriteFailed):
        await pending
    monkeypatch.setattr(os, "writev", real_writev)
    await rotation
    assert [s.records for s in sealed] == [1]
    assert spool.depth_bytes == sealed[0].size == len(record(1))
    spool.release(sealed[0])
    assert spool.depth_bytes == 0 and spool.depth_files == 0
    await spool.close()
