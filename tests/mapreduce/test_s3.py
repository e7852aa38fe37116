"""Reading published data from a remote store through the download cache (--data-dir).

The first test talks to a real S3 API (the moto server); the second pins the cache rules
against the BlobStore interface with an in-memory remote store that counts downloads.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mapreduce import synthetic
from mapreduce.job import main
from pipeline.errors import ObjectNotFound, StoreError
from pipeline.stores import open_store
from pipeline.stores.base import BlobStore, ObjectInfo

REPO = Path(__file__).resolve().parents[2]
COUNTER = REPO / "mapreduce" / "examples" / "simple_counter.py"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mapreduce.job", str(COUNTER), *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=180,
    )


def downloaded(stderr: str) -> int:
    match = re.search(r"(\d+) downloaded", stderr)
    assert match, stderr
    return int(match.group(1))


def test_s3_run_fills_the_cache_and_local_only_rerun_downloads_nothing(moto, tmp_path):
    pytest.importorskip("pipeline.stores.s3")
    url = "s3://published-test/telemetry"
    store = open_store(url, endpoint_url=moto.endpoint, create=True)
    written = synthetic.small_dataset(store, partitions=6, records=20)
    cache = tmp_path / "cache"
    work = tmp_path / "work"

    first = run_cli(
        "-b", url, "-d", str(cache), "-w", str(work), "-m", "2", "-o", str(tmp_path / "1.txt")
    )
    assert first.returncode == 0, first.stderr
    assert downloaded(first.stderr) == len(written)
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*.lz4")) == sorted(written)

    # Listing S3 again but with every file already cached: nothing is downloaded.
    second = run_cli(
        "-b", url, "-d", str(cache), "-w", str(work), "-m", "2", "-o", str(tmp_path / "2.txt")
    )
    assert second.returncode == 0, second.stderr
    assert downloaded(second.stderr) == 0

    # With the bucket gone, --local-only still runs from the cache alone.
    moto.reset()
    third = run_cli(
        "-b", url, "-d", str(cache), "-w", str(work), "-m", "2", "-l", "-o", str(tmp_path / "3.txt")
    )
    assert third.returncode == 0, third.stderr
    assert downloaded(third.stderr) == 0
    first_lines = (tmp_path / "1.txt").read_text()
    assert first_lines and sum(
        int(line.split("\t")[1]) for line in first_lines.splitlines()
    ) == sum(len(r) for r in written.values())
    assert (tmp_path / "2.txt").read_text() == first_lines
    assert (tmp_path / "3.txt").read_text() == first_lines


class CountingRemoteStore(BlobStore):
    """An in-memory 'remote' store (its URL is not file://) that logs each open to a file.

    The log is a file because mappers are forked processes.
    """

    def __init__(self, objects: dict[str, bytes], log: Path) -> None:
        self.url = "mem://remote"
        self.objects = objects
        self.log = log

    def put(self, key, data):
        self.objects[key] = bytes(data)

    def put_file(self, key, path):
        self.objects[key] = Path(path).read_bytes()

    def open(self, key):
        with open(self.log, "a") as handle:
            handle.write(key + "\n")
        try:
            return io.BytesIO(self.objects[key])
        except KeyError as exc:
            raise ObjectNotFound(key) from exc

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        for key in sorted(self.objects):
            if key.startswith(prefix):
                yield ObjectInfo(key, len(self.objects[key]))

    def list_prefixes(self, prefix=""):
        seen = set()
        for key in sorted(self.objects):
            if key.startswith(prefix) and "/" in key[len(prefix) :]:
                child = prefix + key[len(prefix) :].split("/", 1)[0] + "/"
                if child not in seen:
                    seen.add(child)
                    yield child

    def delete(self, key):
        self.objects.pop(key, None)

    def exists(self, key):
        return key in self.objects


def test_cache_is_reused_by_size_and_a_stale_copy_is_downloaded_again(tmp_path, capsys):
    objects: dict[str, bytes] = {}
    log = tmp_path / "opens.log"
    log.touch()
    remote = CountingRemoteStore(objects, log)
    written = synthetic.small_dataset(remote, partitions=4, records=10)
    cache = tmp_path / "cache"
    args = [
        str(COUNTER),
        "-b",
        "mem://remote",
        "-d",
        str(cache),
        "-w",
        str(tmp_path / "work"),
        "-m",
        "2",
    ]

    def run(name: str) -> list[str]:
        before = log.read_text().splitlines()
        code = main([*args, "-o", str(tmp_path / name)], store=remote, store_opener=lambda: remote)
        assert code == 0, capsys.readouterr().err
        return log.read_text().splitlines()[len(before) :]

    assert sorted(run("1.txt")) == sorted(written)
    assert run("2.txt") == []
    stale = sorted(written)[0]
    (cache / stale).write_bytes(b"half a file")
    assert run("3.txt") == [stale]
    assert (cache / stale).read_bytes() == objects[stale]
    outputs = {(tmp_path / n).read_text() for n in ("1.txt", "2.txt", "3.txt")}
    assert len(outputs) == 1 and outputs.pop()


class FailingRemoteStore(CountingRemoteStore):
    """Lists an object it then cannot deliver (the store went away mid-job)."""

    def __init__(self, objects, log, broken: str) -> None:
        super().__init__(objects, log)
        self.broken = broken

    def open(self, key):
        if key == self.broken:
            raise StoreError(f"{self.url}: connection reset while reading {key}")
        return super().open(key)


def test_an_input_that_cannot_be_downloaded_fails_the_job_naming_the_file(tmp_path, capsys):
    objects: dict[str, bytes] = {}
    log = tmp_path / "opens.log"
    broken = sorted(
        synthetic.small_dataset(CountingRemoteStore(objects, log), partitions=3, records=5)
    )[1]
    remote = FailingRemoteStore(objects, log, broken)
    out = tmp_path / "out.txt"
    code = main(
        [
            str(COUNTER),
            "-b",
            "mem://remote",
            "-d",
            str(tmp_path / "cache"),
            "-w",
            str(tmp_path / "w"),
            "-o",
            str(out),
        ],
        store=remote,
        store_opener=lambda: remote,
    )
    err = capsys.readouterr().err
    assert code == 4
    assert f"cannot read input {broken!r}" in err and "connection reset" in err
    assert "job script raised" not in err
    assert not out.exists()
