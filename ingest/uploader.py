"""Background uploader: sealed spool files go to the incoming store, then onto the work queue.

Order of effects for one file, each step retried with exponential backoff until it works:

1. `store.adopt_file(key, path)` (a hard link in a local store on the same file system, an
   upload otherwise): the key is derived from the file name, so repeating this after a
   crash or a failed queue send overwrites the same object, never duplicates it;
2. `queue.send({"key", "records", "bytes"})`;
3. only then the local file is deleted.

A crash between 2 and 3 sends the key a second time on restart; consumers are idempotent per
key (docs/contracts.md "Work queue": output names derive from the batch id). While the store or queue is down the
server keeps spooling; the spool cap (507) is the only backpressure clients see.

Store and queue calls are blocking (boto3, sqlite3), so they run in a single worker thread,
one file at a time, oldest first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import logging
import time
from collections.abc import Callable

from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from ingest.metrics import IngestMetrics
from ingest.spool import SealedFile
from pipeline.errors import ConfigError
from pipeline.queues import WorkQueue
from pipeline.stores import BlobStore

log = logging.getLogger(__name__)


class Uploader:
    def __init__(
        self,
        open_store: Callable[[], BlobStore],
        open_queue: Callable[[], WorkQueue],
        release: Callable[[SealedFile], None],
        metrics: IngestMetrics | None = None,
        *,
        max_backoff: float = 10.0,
    ) -> None:
        self._open_store = open_store
        self._open_queue = open_queue
        self._release = release
        self._metrics = metrics
        self._max_backoff = max_backoff
        self._store: BlobStore | None = None
        self._queue: WorkQueue | None = None
        self._pending: asyncio.Queue[SealedFile] = asyncio.Queue()
        self._busy = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="uploader")
        self.last_error: str | None = None

    # -- feeding ---------------------------------------------------------------------------

    def submit(self, sealed: SealedFile) -> None:
        """Queue a sealed file for upload (called on the event loop)."""
        self._idle.clear()
        self._pending.put_nowait(sealed)

    @property
    def backlog(self) -> int:
        return self._pending.qsize() + (1 if self._busy else 0)

    @property
    def healthy(self) -> bool:
        """False while the last attempt failed and retries are going on."""
        return self.last_error is None

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            sealed = await self._pending.get()
            self._busy = True
            try:
                await self._deliver(sealed)
            finally:
                self._busy = False
                if self._pending.empty():
                    self._idle.set()

    async def _deliver(self, sealed: SealedFile) -> None:
        loop = asyncio.get_running_loop()
        state = {"stored": False}
        started = time.monotonic()
        retrying = AsyncRetrying(
            wait=wait_exponential(multiplier=0.2, max=self._max_backoff),
            retry=retry_if_exception_type(Exception),
            before_sleep=lambda rs: self._note_failure(sealed, rs.outcome.exception()),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await loop.run_in_executor(self._executor, self._upload_and_announce, sealed, state)
        self._release(sealed)
        if self.last_error is not None:
            log.info("uploader: %s delivered; store and queue reachable again", sealed.key)
        self.last_error = None
        if self._metrics is not None:
            self._metrics.upload_seconds.observe(time.monotonic() - started)
            self._metrics.uploaded_records.inc(sealed.records)

    def _upload_and_announce(self, sealed: SealedFile, state: dict[str, bool]) -> None:
        if not state["stored"]:
            if self._store is None:
                self._store = self._open_store()
            self._store.adopt_file(sealed.key, str(sealed.path))
            state["stored"] = True
        if self._queue is None:
            self._queue = self._open_queue()
        self._queue.send(json.dumps(sealed.message(), separators=(",", ":")))
        log.info(
            "uploader: %s uploaded (%d records, %d bytes) and queued",
            sealed.key,
            sealed.records,
            sealed.size,
        )

    def _note_failure(self, sealed: SealedFile, exc: BaseException | None) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        level = logging.ERROR if isinstance(exc, ConfigError) else logging.WARNING
        log.log(
            level,
            "uploader: %s not delivered yet (%s); retrying with backoff",
            sealed.key,
            self.last_error,
        )
        if self._metrics is not None:
            self._metrics.upload_failures.inc()

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued file is delivered; False if `timeout` ran out first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop retrying; undelivered files stay in the spool for the next start."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        # An attempt still running in the worker thread (a slow S3 retry) is waited for off
        # the event loop; its file stays in the spool either way.
        await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self._executor.shutdown, wait=True, cancel_futures=True)
        )
        if self._queue is not None:
            self._queue.close()
