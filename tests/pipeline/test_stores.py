"""One behaviour suite for every blob store backend: a directory, S3 (moto's real server) and
the in-process memory store."""

from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest

from pipeline.errors import ConfigError, ObjectNotFound, StoreError
from pipeline.stores import open_store
from pipeline.stores.base import TMP_MARK
from pipeline.stores.s3 import S3Store


@pytest.fixture(params=["local", "s3", "memory"])
def store(request, tmp_path):
    if request.param == "local":
        opened = open_store(f"file://{tmp_path}/store", setting="TELEMETRY_PUBLISHED_URL")
    elif request.param == "memory":
        opened = open_store(f"memory://store-{uuid.uuid4().hex[:8]}")
    else:
        request.getfixturevalue("moto")
        opened = open_store(
            "s3://test-bucket/some/prefix", setting="TELEMETRY_PUBLISHED_URL", create=True
        )
    yield opened
    opened.close()


def keys(store, prefix: str = "") -> list[str]:
    return [info.key for info in store.list(prefix)]


def test_put_then_get_returns_the_same_bytes(store):
    body = bytes(range(256)) * 10
    store.put("a/b/c.bin", body)
    assert store.get("a/b/c.bin") == body
    assert store.exists("a/b/c.bin")


def test_open_streams_a_large_object_in_chunks(store):
    body = os.urandom(3 * 1024 * 1024 + 17)
    store.put("big.bin", body)
    chunks = []
    with store.open("big.bin") as stream:
        while chunk := stream.read(256 * 1024):
            chunks.append(chunk)
    assert len(chunks) > 1
    assert b"".join(chunks) == body


def test_put_file_and_get_file_round_trip(store, tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(100_000))
    store.put_file("files/one.bin", str(source))
    target = tmp_path / "target.bin"
    store.get_file("files/one.bin", str(target))
    assert target.read_bytes() == source.read_bytes()


def test_put_replaces_an_existing_object(store):
    store.put("k", b"old")
    store.put("k", b"new")
    assert store.get("k") == b"new"
    assert keys(store) == ["k"]


def test_missing_key_raises_object_not_found(store):
    with pytest.raises(ObjectNotFound) as caught:
        store.get("no/such/key")
    assert "no/such/key" in str(caught.value)
    with pytest.raises(KeyError):  # ObjectNotFound is also a KeyError for dict-like callers
        store.open("no/such/key")


def test_exists_is_false_for_missing_keys_and_for_directories(store):
    store.put("dir/obj", b"x")
    assert not store.exists("missing")
    assert not store.exists("dir")
    with pytest.raises(ObjectNotFound):
        store.get("dir")


def test_delete_removes_the_object_and_is_idempotent(store):
    store.put("d/one", b"1")
    store.put("d/two", b"2")
    store.delete("d/one")
    store.delete("d/one")
    store.delete("never/existed")
    assert not store.exists("d/one")
    assert keys(store) == ["d/two"]


def test_list_yields_keys_in_key_order_with_sizes(store):
    objects = {"b": b"22", "a/c/d": b"4444", "a-b": b"1", "ab": b"333", "a/b": b"", "a/z": b"7"}
    for key, body in objects.items():
        store.put(key, body)
    listed = list(store.list())
    assert [i.key for i in listed] == sorted(objects)
    assert {i.key: i.size for i in listed} == {k: len(v) for k, v in objects.items()}


def test_list_says_when_each_object_was_written(store):
    """The reconciler tells a stranded batch from one just uploaded by this time."""
    import time

    before = time.time()
    store.put("dated/one", b"1")
    [info] = store.list("dated/")
    # S3 keeps whole seconds; the local store the file's mtime (clock granularity aside)
    assert before - 2 <= info.modified <= time.time() + 2


def test_list_filters_by_any_string_prefix(store):
    for key in ["a/b", "a/c/d", "a-b", "ab", "b"]:
        store.put(key, b"x")
    assert keys(store, "a/") == ["a/b", "a/c/d"]
    assert keys(store, "a") == ["a-b", "a/b", "a/c/d", "ab"]
    assert keys(store, "a/c") == ["a/c/d"]
    assert keys(store, "zzz") == []


def test_list_prefixes_yields_immediate_subdirectories(store):
    for key in ["main/Firefox/release/a", "main/Fennec/b", "saved/x", "top"]:
        store.put(key, b"x")
    assert list(store.list_prefixes()) == ["main/", "saved/"]
    assert list(store.list_prefixes("main/")) == ["main/Fennec/", "main/Firefox/"]
    assert list(store.list_prefixes("nothing/")) == []


def test_list_prefixes_forgets_a_directory_whose_objects_were_deleted(store):
    store.put("a/b/c", b"x")
    store.put("a/keep", b"x")
    store.delete("a/b/c")
    assert list(store.list_prefixes("a/")) == []
    assert keys(store) == ["a/keep"]


def test_list_pages_past_one_thousand_objects(store):
    # S3 returns at most 1000 keys per request: the listing must follow the pages.
    names = [f"many/{i:05d}" for i in range(1100)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: store.put(key, b"."), names))
    assert keys(store, "many/") == names


def test_invalid_keys_are_refused(store):
    for bad in ["", "/a", "a/", "a//b", "a/../b", "./a", f"a/{TMP_MARK}x"]:
        with pytest.raises(StoreError):
            store.put(bad, b"x")
    assert keys(store) == []


def test_an_adopted_file_is_stored_and_survives_its_source(store, tmp_path):
    source = tmp_path / "sealed.batch"
    source.write_bytes(os.urandom(50_000))
    source.chmod(0o644)
    body = source.read_bytes()
    store.adopt_file("20260101/one.batch", str(source))
    source.unlink()  # what the spool does once the batch is announced
    assert store.get("20260101/one.batch") == body
    assert [name for name in keys(store) if TMP_MARK in name] == []


def test_the_local_store_adopts_a_file_without_copying_it(tmp_path):
    """A hard link on the same file system; a copy when the file's mode is not the store's."""
    store = open_store(f"file://{tmp_path}/store", setting="TELEMETRY_INCOMING_URL")
    linked, copied = tmp_path / "linked.batch", tmp_path / "copied.batch"
    linked.write_bytes(b"records")
    linked.chmod(0o644)
    copied.write_bytes(b"more records")
    copied.chmod(0o600)
    store.adopt_file("a/linked.batch", str(linked))
    store.adopt_file("a/copied.batch", str(copied))
    root = tmp_path / "store" / "a"
    assert (root / "linked.batch").stat().st_ino == linked.stat().st_ino
    assert (root / "copied.batch").stat().st_ino != copied.stat().st_ino
    assert (root / "copied.batch").stat().st_mode & 0o777 == 0o644
    assert store.get("a/copied.batch") == b"more records"


def test_failed_put_file_leaves_no_object(store, tmp_path):
    with pytest.raises(OSError):
        store.put_file("k", str(tmp_path / "does-not-exist"))
    assert not store.exists("k")
    assert keys(store) == []


def test_concurrent_reader_sees_only_whole_old_or_new_objects(store):
    """Overwrite one key again and again while another thread reads and lists it."""
    old, new = b"A" * 300_000, b"B" * 200_000
    store.put("obj", old)
    stop = threading.Event()
    failures: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            body = store.get("obj")
            if body not in (old, new):
                failures.append(f"partial object of {len(body)} bytes")
            listed = keys(store)
            if listed != ["obj"]:
                failures.append(f"listing showed {listed}")
            reads += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            store.put("obj", new if i % 2 == 0 else old)
    finally:
        stop.set()
        thread.join(60)
    assert reads > 0
    assert failures == []


def test_local_put_interrupted_before_rename_keeps_the_old_object(tmp_path, monkeypatch):
    store = open_store(f"file://{tmp_path}/s")
    store.put("k", b"old")

    def crash(_fd):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        store.put("k", b"new and half written")
    monkeypatch.undo()
    assert store.get("k") == b"old"
    assert sorted(os.listdir(tmp_path / "s")) == ["k"]  # no temp file left behind


def test_s3_large_put_file_goes_up_in_parts(moto, tmp_path):
    store = S3Store(
        "s3://parts-bucket",
        "parts-bucket",
        create=True,
        multipart_threshold=5 * 1024 * 1024,
        multipart_chunksize=5 * 1024 * 1024,
    )
    source = tmp_path / "big"
    source.write_bytes(os.urandom(6 * 1024 * 1024))
    store.put_file("big", str(source))
    s3 = boto3.client("s3", endpoint_url=moto.endpoint)
    etag = s3.head_object(Bucket="parts-bucket", Key="big")["ETag"]
    assert etag.strip('"').endswith("-2")  # a multipart upload's ETag counts its parts
    assert store.get("big") == source.read_bytes()


def test_s3_keys_live_under_the_url_prefix(moto):
    store = open_store("s3://prefixed-bucket/base/dir", create=True)
    store.put("x/y", b"1")
    s3 = boto3.client("s3", endpoint_url=moto.endpoint)
    listed = s3.list_objects_v2(Bucket="prefixed-bucket")["Contents"]
    assert [item["Key"] for item in listed] == ["base/dir/x/y"]
    assert list(store.list_prefixes()) == ["x/"]


# -- bad configuration: one clear error naming the setting ------------------------------------


def test_unknown_store_scheme_names_the_setting():
    with pytest.raises(ConfigError) as caught:
        open_store("ftp://host/dir", setting="TELEMETRY_INCOMING_URL")
    assert caught.value.setting == "TELEMETRY_INCOMING_URL"
    assert "ftp://" in str(caught.value)


def test_missing_bucket_names_the_setting(moto):
    with pytest.raises(ConfigError) as caught:
        open_store("s3://no-such-bucket/p", setting="TELEMETRY_INCOMING_URL")
    assert str(caught.value).startswith("TELEMETRY_INCOMING_URL: ")
    assert "no-such-bucket" in str(caught.value)
    assert "does not exist" in str(caught.value)


def test_s3_url_without_bucket_names_the_setting():
    with pytest.raises(ConfigError, match="TELEMETRY_PUBLISHED_URL: .*names no bucket"):
        open_store("s3:///prefix", setting="TELEMETRY_PUBLISHED_URL")


def test_directory_under_a_regular_file_names_the_setting(tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError) as caught:
        open_store(f"file://{blocker}/store", setting="TELEMETRY_PUBLIC_URL")
    assert caught.value.setting == "TELEMETRY_PUBLIC_URL"
    assert str(blocker) in str(caught.value)


def test_unreadable_store_directory_names_the_setting(tmp_path, monkeypatch):
    """Root (as in CI) may read any directory, so the permission answer is what is faked."""
    import pipeline.stores.local as local

    root = tmp_path / "store"
    root.mkdir()
    monkeypatch.setattr(local.os, "access", lambda path, mode: Path(path) != root)
    with pytest.raises(ConfigError, match="TELEMETRY_PUBLIC_URL: .*not readable"):
        open_store(f"file://{root}", setting="TELEMETRY_PUBLIC_URL")


def test_file_where_the_store_directory_should_be_names_the_setting(tmp_path):
    blocker = tmp_path / "store"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="TELEMETRY_PUBLIC_URL: .*not a directory"):
        open_store(f"file://{blocker}", setting="TELEMETRY_PUBLIC_URL")


def test_local_store_never_follows_symbolic_links(tmp_path):
    """A link planted in a store (the public store is served to anyone) exposes nothing."""
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.txt").write_text("private")
    root = tmp_path / "store"
    store = open_store(f"file://{root}")
    store.put("job/data/real.txt", b"public")
    (root / "job" / "data" / "link.txt").symlink_to(outside / "secret.txt")
    (root / "job" / "data" / "etcdir").symlink_to(outside)
    (root / "other").symlink_to(outside)
    assert [info.key for info in store.list("")] == ["job/data/real.txt"]
    assert list(store.list_prefixes("")) == ["job/"]
    for key in ("job/data/link.txt", "job/data/etcdir/secret.txt", "other/secret.txt"):
        assert not store.exists(key)
        with pytest.raises(ObjectNotFound):
            store.get(key)
    with pytest.raises(StoreError, match="symbolic link"):
        store.put("other/planted.txt", b"x")
    assert not (outside / "planted.txt").exists()
    assert store.get("job/data/real.txt") == b"public"
