"""The durable spool: accepted requests are appended to local files before they are answered.

Why a spool: the edge must never lose a submission it has acknowledged, even if the process
is killed or the incoming store is down. Each request becomes one record (the format lives in
`pipeline.records`). The event loop only queues the record's bytes; one writer at a time per
file (a worker thread) appends the whole queued group in order with `writev`, so appends from
concurrent requests never interleave and the loop never blocks on the disk. The caller is
answered only once its record is durable under the fsync policy:

- `group` (default): group commit: one write and one fdatasync per group; everyone who
  appended while the previous group was being written shares the next one;
- `always`: one fdatasync per record;
- `none`: answered once the bytes are in the page cache (survives a process crash, not a
  machine crash).

A failed write cuts the file back to where its group started and answers that group with 507.

File life cycle in the spool directory:

    <stem>.open   being appended to (at most one per process)
    <stem>.batch  sealed (fsync'd, renamed), waiting for the uploader
    quarantine/   files with damage other than a torn tail, kept for a person to inspect

`<stem>` is `<YYYYMMDD>-<HHMMSS>-<hostname>-<pid>-<uuid>`; the incoming-store key is derived
from it (`<YYYYMMDD>/<HHMMSS>-<hostname>-<pid>-<uuid>.batch`), so a retried or repeated upload
of the same file overwrites the same object instead of duplicating it.

On start, `recover` truncates a torn tail left by a crash to the last whole record (found
with `pipeline.records.scan`) and seals every leftover `.open` file, so the uploader sends
them first. An exclusive lock on `<spool_dir>/.lock` keeps two servers from sharing a spool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ingest.errors import SpoolClosed, SpoolFull, SpoolLocked, SpoolRefusal, SpoolWriteFailed
from pipeline.records import CorruptBatch, scan

log = logging.getLogger(__name__)

OPEN_SUFFIX = ".open"
SEALED_SUFFIX = ".batch"
QUARANTINE = "quarantine"
LOCK_NAME = ".lock"
FSYNC_POLICIES = ("always", "group", "none")
IOV_MAX = 1024


@dataclasses.dataclass
class SealedFile:
    """A finished spool file waiting for upload."""

    path: Path
    key: str
    records: int
    size: int

    def message(self) -> dict[str, object]:
        """The work-queue message announcing this batch (see docs/formats.md "Spool record and incoming batch")."""
        return {"key": self.key, "records": self.records, "bytes": self.size}


def key_for(stem: str) -> str:
    """Incoming-store key of a spool file: `<YYYYMMDD>/<rest of the stem>.batch`."""
    day, _, rest = stem.partition("-")
    if not (len(day) == 8 and day.isdigit() and rest):
        raise ValueError(f"spool file name {stem!r} does not start with <YYYYMMDD>-")
    return f"{day}/{rest}{SEALED_SUFFIX}"


def _safe_hostname() -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname())[:64] or "host"


def _new_stem(now: float | None = None) -> str:
    moment = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    return f"{moment:%Y%m%d-%H%M%S}-{_safe_hostname()}-{os.getpid()}-{uuid.uuid4().hex}"


def _write_all(fd: int, chunks: list[bytes]) -> None:
    """Write every chunk, in order, with as few syscalls as possible (writev)."""
    views = [memoryview(chunk) for chunk in chunks]
    first = 0
    while first < len(views):
        written = os.writev(fd, views[first : first + IOV_MAX])
        if written == 0:
            raise OSError(errno.ENOSPC, "write made no progress")
        while first < len(views) and written >= len(views[first]):
            written -= len(views[first])
            first += 1
        if written:
            views[first] = views[first][written:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _OpenFile:
    """The file currently appended to, with the group of records waiting to be written."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.size = 0  # bytes accepted for this file, written or about to be
        self.records = 0
        self.written = 0  # bytes on disk (only the writer thread changes it)
        self.created = time.monotonic()
        self.batch: list[bytes] = []  # appended, not yet handed to the writer thread
        self.waiters: list[asyncio.Future[None]] = []  # their requests, waiting for the commit
        self.committer: asyncio.Task | None = None
        self.counted = (0, 0)  # (bytes, files) added to the sealed totals at rotation


class Spool:
    """Append records durably; seal files by size and age; hand sealed files to `on_sealed`."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_file_bytes: int = 64 * 1024 * 1024,
        max_age_seconds: float = 60.0,
        cap_bytes: int = 2 * 1024 * 1024 * 1024,
        min_free_bytes: int = 256 * 1024 * 1024,
        fsync_policy: str = "group",
        on_sealed: Callable[[SealedFile], None] | None = None,
        housekeeping_interval: float = 0.5,
    ) -> None:
        if fsync_policy not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {FSYNC_POLICIES}, got {fsync_policy!r}")
        self.directory = Path(directory)
        self.max_file_bytes = max_file_bytes
        self.max_age_seconds = max_age_seconds
        self.cap_bytes = cap_bytes
        self.min_free_bytes = min_free_bytes
        self.fsync_policy = fsync_policy
        self.on_sealed = on_sealed or (lambda sealed: None)
        self.housekeeping_interval = housekeeping_interval
        self._current: _OpenFile | None = None
        self._sealed_bytes = 0  # sealed files not yet released by the uploader
        self._sealed_files = 0
        self._sealing: set[asyncio.Task] = set()
        self._free_bytes: int | None = None
        self._housekeeper: asyncio.Task | None = None
        self._lock_fd: int | None = None
        self._closed = False
        # fsyncs and seals run here so the event loop keeps accepting while the disk works.
        self._executor = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="spool-fsync")

    # -- start-up -------------------------------------------------------------------------

    def recover(self) -> list[SealedFile]:
        """Lock the directory, repair leftovers of an earlier run, return every sealed file.

        Called once before the server accepts requests; the result (oldest first) goes to the
        uploader ahead of anything new.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock()
        for path in sorted(self.directory.glob(f"*{OPEN_SUFFIX}")):
            self._repair(path)
        sealed = []
        for path in sorted(self.directory.glob(f"*{SEALED_SUFFIX}")):
            try:
                found = self._describe_sealed(path)
            except CorruptBatch as exc:
                self._quarantine(path, str(exc))
                continue
            if found is not None:
                sealed.append(found)
        self._sealed_bytes = sum(s.size for s in sealed)
        self._sealed_files = len(sealed)
        self._refresh_free_bytes()
        if sealed:
            log.info(
                "spool %s: %d leftover batch(es), %d bytes, queued for upload first",
                self.directory,
                len(sealed),
                self._sealed_bytes,
            )
        return sealed

    def _lock(self) -> None:
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise SpoolLocked(
                f"spool directory {self.directory} is in use by another ingest process; "
                "give each server its own TELEMETRY_SPOOL_DIR"
            ) from exc
        self._lock_fd = fd

    def _repair(self, path: Path) -> None:
        """Truncate a crashed `.open` file to its whole records and seal it."""
        data = path.read_bytes()
        try:
            result = scan(data, str(path))
        except CorruptBatch as exc:
            self._quarantine(path, str(exc))
            return
        if result.records == 0:
            log.info(
                "spool: removing empty leftover %s (%d torn bytes)", path.name, result.torn_bytes
            )
            path.unlink()
            return
        with open(path, "r+b") as handle:
            if result.torn_bytes:
                log.warning(
                    "spool: %s had a torn tail of %d bytes after %d records; truncated",
                    path.name,
                    result.torn_bytes,
                    result.records,
                )
                handle.truncate(result.valid_length)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(path, path.with_suffix(SEALED_SUFFIX))
        _fsync_dir(self.directory)

    def _describe_sealed(self, path: Path) -> SealedFile | None:
        data = path.read_bytes()
        result = scan(data, str(path))
        if result.records == 0:
            path.unlink()
            return None
        if result.torn_bytes:  # sealed files are whole; a tail here means outside damage
            raise CorruptBatch(str(path), result.valid_length, "sealed batch has trailing bytes")
        return SealedFile(path, key_for(path.stem), result.records, len(data))

    def _quarantine(self, path: Path, problem: str) -> None:
        target_dir = self.directory / QUARANTINE
        target_dir.mkdir(exist_ok=True)
        target = target_dir / path.name
        os.rename(path, target)
        log.error(
            "spool: %s is damaged (%s); moved to %s for inspection, not uploaded",
            path.name,
            problem,
            target,
        )

    def start(self) -> None:
        """Start the age-rotation and free-disk checks (needs a running event loop)."""
        self._housekeeper = asyncio.get_running_loop().create_task(self._housekeeping())

    # -- state ----------------------------------------------------------------------------

    @property
    def depth_bytes(self) -> int:
        """Bytes on local disk not yet uploaded: sealed files plus the open file."""
        return self._sealed_bytes + (self._current.size if self._current else 0)

    @property
    def depth_files(self) -> int:
        return self._sealed_files + (1 if self._current and self._current.records else 0)

    def refusal(self, incoming: int = 0) -> SpoolRefusal | None:
        """Why a record of `incoming` bytes would be refused right now, or None."""
        if self.depth_bytes + incoming > self.cap_bytes:
            return SpoolFull(
                f"spool holds {self.depth_bytes} bytes, cap is {self.cap_bytes}", "spool_cap"
            )
        if self._free_bytes is not None and self._free_bytes - incoming < self.min_free_bytes:
            return SpoolFull(
                f"{self._free_bytes} bytes free on the spool disk, floor is {self.min_free_bytes}",
                "disk_free",
            )
        return None

    # -- appending --------------------------------------------------------------------------

    async def append(self, record: bytes) -> None:
        """Append one encoded record; return once it is durable under the fsync policy."""
        await self.append_nowait(record)

    def append_nowait(self, record: bytes) -> asyncio.Future[None]:
        """Queue one encoded record; the future is done once it is durable under the fsync
        policy (or fails with `SpoolWriteFailed`). A refusal (`SpoolFull`, `SpoolClosed`) is
        raised at once. The HTTP server waits on the future with a callback, no task."""
        if self._closed:
            raise SpoolClosed("the spool is shutting down")
        refusal = self.refusal(len(record))
        if refusal is not None:
            raise refusal
        current = self._current
        if (
            current is not None
            and current.records
            and current.size + len(record) > self.max_file_bytes
        ):
            self._rotate()
            current = None
        if current is None:
            current = self._open_new()
        current.batch.append(record)
        current.size += len(record)
        current.records += 1
        if self._free_bytes is not None:
            self._free_bytes -= len(record)
        waiter = asyncio.get_running_loop().create_future()
        current.waiters.append(waiter)
        if current.committer is None:
            current.committer = asyncio.ensure_future(self._commit_loop(current))
        return waiter

    def _open_new(self) -> _OpenFile:
        path = self.directory / f"{_new_stem()}{OPEN_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._current = _OpenFile(path, fd)
        return self._current

    async def _commit_loop(self, current: _OpenFile) -> None:
        """Group commit: write (and fsync) everything appended so far in one go, repeat.

        The next group goes to the disk as soon as the previous one is durable, before that
        one's requests are answered: answering them takes the event loop a while (each answer
        is written and logged), and the disk would sit idle for that long otherwise.
        """
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(0)  # let requests that are ready this turn join the group
            records, waiters = self._take_group(current)
            writing = loop.run_in_executor(self._executor, self._write_group, current, records)
            while True:
                try:
                    await writing
                except OSError as exc:
                    error: OSError | None = exc
                else:
                    error = None
                done_records, done_waiters = records, waiters
                records, waiters = self._take_group(current)
                if records:
                    writing = loop.run_in_executor(
                        self._executor, self._write_group, current, records
                    )
                self._settle(current, done_records, done_waiters, error)
                if not records:
                    break
        finally:
            current.committer = None

    @staticmethod
    def _take_group(current: _OpenFile) -> tuple[list[bytes], list[asyncio.Future[None]]]:
        records, waiters = current.batch, current.waiters
        current.batch, current.waiters = [], []
        return records, waiters

    def _settle(
        self,
        current: _OpenFile,
        records: list[bytes],
        waiters: list[asyncio.Future[None]],
        error: OSError | None,
    ) -> None:
        """Answer a written group's requests: durable, or not stored (`SpoolWriteFailed`)."""
        if error is None:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            return
        failed = sum(map(len, records))
        current.size -= failed
        current.records -= len(records)
        if self._free_bytes is not None:
            self._free_bytes += failed
        log.error(
            "spool: writing %d records to %s failed: %s", len(records), current.path.name, error
        )
        refusal = SpoolWriteFailed(f"cannot write the spool: {error.strerror or error}")
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(refusal)

    def _write_group(self, current: _OpenFile, records: list[bytes]) -> None:
        """Worker thread: append `records` in order, then make them durable per the policy.

        All or nothing: on any error the file is cut back to where this group started, so a
        half-written record never sits in front of later ones.
        """
        try:
            if self.fsync_policy == "always":
                for record in records:
                    _write_all(current.fd, [record])
                    os.fdatasync(current.fd)
            else:
                _write_all(current.fd, records)
                if self.fsync_policy == "group":
                    os.fdatasync(current.fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(current.fd, current.written)
            raise
        current.written += sum(map(len, records))

    # -- rotation and sealing -------------------------------------------------------------------

    def _rotate(self) -> asyncio.Task | None:
        """Stop appending to the current file and seal it in the background."""
        current, self._current = self._current, None
        if current is None:
            return None
        task = asyncio.get_running_loop().create_task(self._seal(current))
        self._sealing.add(task)
        task.add_done_callback(self._sealing.discard)
        # Count the bytes as sealed right away so depth stays right while the seal runs;
        # `_seal` corrects this if a write still in flight fails.
        current.counted = (current.size, 1 if current.records else 0)
        self._sealed_bytes += current.size
        self._sealed_files += current.counted[1]
        return task

    async def rotate(self) -> None:
        """Seal the current file now (if it holds records) and wait until it is sealed."""
        task = self._rotate()
        if task is not None:
            await task

    async def _seal(self, current: _OpenFile) -> None:
        while current.committer is not None:
            await asyncio.gather(current.committer, return_exceptions=True)
        counted_bytes, counted_files = current.counted
        self._sealed_bytes += current.size - counted_bytes
        self._sealed_files += (1 if current.records else 0) - counted_files
        loop = asyncio.get_running_loop()
        if current.records == 0:
            await loop.run_in_executor(self._executor, self._discard_empty, current)
            return
        sealed_path = current.path.with_suffix(SEALED_SUFFIX)
        try:
            await loop.run_in_executor(self._executor, self._finish_file, current, sealed_path)
        except OSError as exc:
            # The file stays `.open` and is repaired and uploaded on the next start.
            log.error(
                "spool: sealing %s failed: %s; it will be recovered on restart",
                current.path.name,
                exc,
            )
            return
        sealed = SealedFile(sealed_path, key_for(sealed_path.stem), current.records, current.size)
        log.info("spool: sealed %s (%d records, %d bytes)", sealed.key, sealed.records, sealed.size)
        self.on_sealed(sealed)

    def _discard_empty(self, current: _OpenFile) -> None:
        os.close(current.fd)
        with contextlib.suppress(FileNotFoundError):
            current.path.unlink()

    def _finish_file(self, current: _OpenFile, sealed_path: Path) -> None:
        try:
            os.fsync(current.fd)
        finally:
            os.close(current.fd)
        os.rename(current.path, sealed_path)
        _fsync_dir(self.directory)

    def release(self, sealed: SealedFile) -> None:
        """Forget a sealed file after it was uploaded and announced; deletes it from disk."""
        with contextlib.suppress(FileNotFoundError):
            sealed.path.unlink()
        self._sealed_bytes -= sealed.size
        self._sealed_files -= 1

    # -- housekeeping and shutdown --------------------------------------------------------

    def _refresh_free_bytes(self) -> None:
        try:
            stats = os.statvfs(self.directory)
        except OSError as exc:
            log.warning("spool: cannot stat %s: %s", self.directory, exc)
            return
        self._free_bytes = stats.f_bavail * stats.f_frsize

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.housekeeping_interval)
            self._refresh_free_bytes()
            current = self._current
            if (
                current is not None
                and current.records
                and time.monotonic() - current.created >= self.max_age_seconds
            ):
                self._rotate()

    async def close(self) -> None:
        """Refuse new appends, seal the current file and wait for every seal to finish.

        The directory stays locked until `unlock`, so no second server picks up the sealed
        files while this one is still uploading them.
        """
        self._closed = True
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeper
        self._rotate()
        while self._sealing:
            await asyncio.gather(*list(self._sealing), return_exceptions=True)
        self._executor.shutdown(wait=True)

    def unlock(self) -> None:
        """Let another process use the directory (after the uploader is done with it)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
