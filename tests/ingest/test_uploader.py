"""The uploader's order of effects: store, then queue, then delete; retries keep the same key."""

from __future__ import annotations

import json

from ingest.spool import Spool
from ingest.uploader import Uploader
from pipeline.errors import QueueError, StoreError
from pipeline.queues import open_queue
from pipeline.records import encode_record
from pipeline.stores import open_store
from tests.support.waiting import wait_for_async

DOC = "17caa68c-25f5-450a-9cce-7d31318846d8"


class FlakyStore:
    """The real local store, failing its first `failures` puts (an in-process stand-in)."""

    def __init__(self, store, failures: int) -> None:
        self.store, self.failures, self.puts = store, failures, []

    def adopt_file(self, key: str, path: str) -> None:
        self.puts.append(key)
        if self.failures:
            self.failures -= 1
            raise StoreError("store unavailable")
        self.store.adopt_file(key, path)


class FlakyQueue:
    def __init__(self, queue, failures: int) -> None:
        self.queue, self.failures, self.sends = queue, failures, 0

    def send(self, body: str) -> None:
        self.sends += 1
        if self.failures:
            self.failures -= 1
            raise QueueError("queue unavailable")
        self.queue.send(body)

    def close(self) -> None:
        self.queue.close()


async def deliver_one(tmp_path, store, queue):
    spool = Spool(tmp_path / "spool", min_free_bytes=0)
    spool.recover()
    uploader = Uploader(lambda: store, lambda: queue, spool.release, max_backoff=0.05)
    spool.on_sealed = uploader.submit
    uploader.start()
    await spool.append(encode_record(1, f"/submit/telemetry/{DOC}", {}, b"body"))
    await spool.rotate()
    return spool, uploader


async def test_store_outage_is_retried_and_file_deleted_only_after_delivery(tmp_path):
    local = open_store(f"file://{tmp_path}/incoming")
    queue = open_queue(f"sqlite:///{tmp_path}/queue.db")
    store = FlakyStore(local, failures=3)
    spool, uploader = await deliver_one(tmp_path, store, queue)
    assert await uploader.drain(timeout=60)
    assert len(store.puts) == 4 and len(set(store.puts)) == 1
    message = json.loads(queue.claim().body)
    assert message["key"] == store.puts[0] and message["records"] == 1
    assert local.exists(message["key"])
    assert not list((tmp_path / "spool").glob("*.batch"))
    assert uploader.healthy
    await uploader.close()
    await spool.close()


async def test_queue_outage_keeps_the_file_until_the_message_is_sent(tmp_path):
    local = open_store(f"file://{tmp_path}/incoming")
    queue = FlakyQueue(open_queue(f"sqlite:///{tmp_path}/queue.db"), failures=1000)
    spool, uploader = await deliver_one(tmp_path, FlakyStore(local, 0), queue)
    await wait_for_async(lambda: queue.sends >= 3, 30, "three attempts to announce")
    assert queue.sends >= 3
    assert not uploader.healthy and "queue unavailable" in uploader.last_error
    assert len(list((tmp_path / "spool").glob("*.batch"))) == 1  # uploaded, not yet announced: kept
    assert len(list(local.list(""))) == 1
    queue.failures = 0
    assert await uploader.drain(timeout=60)
    assert not list((tmp_path / "spool").glob("*.batch"))
    assert queue.queue.depth() == 1
    await uploader.close()
    await spool.close()


async def test_batches_left_at_shutdown_are_uploaded_first_on_the_next_start(data_dir, tmp_path):
    import aiohttp

    from ingest.app import create_app
    from ingest.server import running
    from pipeline.config import load_settings
    from pipeline.records import iter_records

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    unusable = load_settings(incoming_url=f"file://{blocker}/incoming")
    app = create_app(unusable, drain_timeout=0.5, upload_max_backoff=0.1, count_hourly=False)
    async with running(app, access_log=False) as url:
        async with aiohttp.ClientSession() as session:
            for i in range(3):
                async with session.post(
                    f"{url}/submit/telemetry/{DOC}", data=f"{i}".encode()
                ) as response:
                    assert response.status == 200
    spool_dir = tmp_path / "var" / "spool"
    assert len(list(spool_dir.glob("*.batch"))) == 1  # not delivered: kept for the next start

    settings = load_settings()
    async with running(create_app(settings, count_hourly=False), access_log=False):
        pass  # start-up queues the leftover; shutdown drains it
    store = open_store(settings.incoming_url)
    [info] = list(store.list(""))
    with store.open(info.key) as stream:
        assert [r.body for r in iter_records(stream)] == [b"0", b"1", b"2"]
    assert json.loads(open_queue(settings.queue_url).claim().body)["key"] == info.key
    assert not list(spool_dir.glob("*.batch"))
