"""The one publish step of both runners: guard a run's output, then copy it to the public store.

Published data is public, so this runs outside the sandbox, after every process of the run
is gone, and trusts nothing the job left behind:

1. Collect (`stage_directory` for the local runner, `stage_store` for the EC2 runner's
   private staging prefix): walk the output directory from the job directory with
   `O_NOFOLLOW` opens and `lstat`, resolving nothing. Refused: `output` (or a directory on
   its path) being a symbolic link, symbolic links, hard links (`st_nlink > 1`: the same
   inode could be a private file of someone else), devices, FIFOs, sockets, files over the
   size limit, names that are not UTF-8. Each regular file is copied, from the descriptor
   that was checked, into a private staging directory of the scheduler.
2. Guard (`check_staged`): the raw-data rules of `scheduler.publish_scan` on every byte of
   every staged copy (decompressing gzip, bz2, xz, lz4, zip, tar).
3. Publish (`publish_staged`): only when nothing was refused (all or nothing: a partial
   publication could look complete to its readers), copy the staged files to
   `<job_name>/data/<relative path>` in `TELEMETRY_PUBLIC_URL`. Files from earlier runs stay.

The run log goes to `<job_name>/logs/<run_id>.log` (`publish_log`), through the same rules:
a log that breaks one is replaced by the scheduler's own lines and a note saying why.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import io
import os
import posixpath
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.config import Settings
from pipeline.db import make_engine
from pipeline.seen_docs import seen_doc_ids
from pipeline.stores import BlobStore
from pipeline.stores.base import validate_key
from scheduler.config import SchedulerConfig
from scheduler.errors import OutputMissing, Refused
from scheduler.publish_scan import Scanner

MAX_OUTPUT_FILES = 10_000
MAX_OUTPUT_DEPTH = 32
COPY_CHUNK = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Refusal:
    path: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Staged:
    """One output file: its relative name and the scheduler's private copy of it."""

    rel: str
    path: Path


_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _open_output(job_dir: Path, output_rel: str) -> int:
    """Descriptor of the output directory, opened component by component without following
    a symbolic link anywhere below the job directory."""
    norm = posixpath.normpath(output_rel)
    if posixpath.isabs(norm) or norm == ".." or norm.startswith("../"):
        raise Refused("output-path", output_rel, "the output directory must be inside the job")
    fd = os.open(job_dir, _DIR_FLAGS)
    try:
        for part in [] if norm == "." else norm.split("/"):
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                raise OutputMissing(output_rel) from None
            if not stat.S_ISDIR(st.st_mode):
                raise Refused(
                    "output-path",
                    output_rel,
                    f"{part!r} is {_kind(st.st_mode)}: the output directory must be a real "
                    "directory inside the job directory",
                )
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _copy_fd(fd: int, target: Path, limit: int) -> int:
    """Copy from `fd` into a new private file; stops and returns > limit when over it."""
    copied = 0
    with open(target, "xb") as out:
        os.fchmod(out.fileno(), 0o600)
        while chunk := os.read(fd, COPY_CHUNK):
            copied += len(chunk)
            if copied > limit:
                break
            out.write(chunk)
    return copied


def stage_directory(
    job_dir: Path, output_rel: str, staging: Path, max_file_bytes: int
) -> tuple[list[Staged], list[Refusal]]:
    """Collect the output of a finished local run (step 1 of the module docstring).

    Raises OutputMissing when the output directory does not exist."""
    staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    staged: list[Staged] = []
    refusals: list[Refusal] = []
    try:
        root = _open_output(job_dir, output_rel)
    except Refused as exc:
        return [], [Refusal(output_rel, exc.detail)]
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return [], [Refusal(output_rel, "is not a real directory")]
        raise

    def walk(dir_fd: int, prefix: str) -> None:
        if prefix.count("/") >= MAX_OUTPUT_DEPTH:
            refusals.append(Refusal(prefix, f"is nested deeper than {MAX_OUTPUT_DEPTH} levels"))
            return
        for name in sorted(os.listdir(dir_fd)):
            rel = prefix + name
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                refusals.append(Refusal(repr(rel), "has a file name that is not UTF-8"))
                continue
            if len(staged) + len(refusals) >= MAX_OUTPUT_FILES:
                refusals.append(Refusal(rel, f"more than {MAX_OUTPUT_FILES} output files"))
                return
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    walk(child, rel + "/")
                finally:
                    os.close(child)
                continue
            if not stat.S_ISREG(st.st_mode):
                refusals.append(
                    Refusal(rel, f"is {_kind(st.st_mode)} (only regular files are published)")
                )
                continue
            problem = _regular_problem(st, max_file_bytes)
            if problem:
                refusals.append(Refusal(rel, problem))
                continue
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
            try:
                st = os.fstat(fd)  # what was opened, not what was looked at
                problem = (
                    _regular_problem(st, max_file_bytes)
                    if stat.S_ISREG(st.st_mode)
                    else f"is {_kind(st.st_mode)}"
                )
                if problem:
                    refusals.append(Refusal(rel, problem))
                    continue
                target = staging / str(len(staged))
                if _copy_fd(fd, target, max_file_bytes) > max_file_bytes:
                    refusals.append(Refusal(rel, _too_big(max_file_bytes)))
                    continue
                staged.append(Staged(rel, target))
            finally:
                os.close(fd)

    try:
        walk(root, "")
    finally:
        os.close(root)
    return staged, refusals


def _too_big(limit: int) -> str:
    return f"is over the publish limit of {limit} bytes"


def _regular_problem(st: os.stat_result, max_file_bytes: int) -> str | None:
    if st.st_nlink > 1:
        return f"is a hard link ({st.st_nlink} names for one file; only plain files are published)"
    if st.st_size > max_file_bytes:
        return f"is {st.st_size} bytes, over the publish limit of {max_file_bytes} bytes"
    return None


def stage_store(
    store: BlobStore, prefix: str, staging: Path, max_file_bytes: int
) -> tuple[list[Staged], list[Refusal]]:
    """Collect outputs uploaded under `prefix` of a private store (the EC2 runner's staging
    area) into private files, for the same guard."""
    staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    staged: list[Staged] = []
    refusals: list[Refusal] = []
    for info in store.list(prefix):
        rel = info.key[len(prefix) :]
        if len(staged) + len(refusals) >= MAX_OUTPUT_FILES:
            refusals.append(Refusal(rel, f"more than {MAX_OUTPUT_FILES} output files"))
            break
        if info.size > max_file_bytes:
            refusals.append(Refusal(rel, _too_big(max_file_bytes)))
            continue
        target = staging / str(len(staged))
        copied = 0
        with store.open(info.key) as src, open(target, "xb") as out:
            while chunk := src.read(COPY_CHUNK):
                copied += len(chunk)
                if copied > max_file_bytes:
                    break
                out.write(chunk)
        if copied > max_file_bytes:
            refusals.append(Refusal(rel, _too_big(max_file_bytes)))
            continue
        staged.append(Staged(rel, target))
    return staged, refusals


@functools.lru_cache(maxsize=4)
def _engine(database_url: str):
    return make_engine(database_url)


def guard_scanner(settings: Settings, config: SchedulerConfig) -> Scanner:
    """The raw-data guard of this installation: its limits and its dedup table."""
    return Scanner(
        lambda ids: seen_doc_ids(_engine(settings.database_url), ids),
        max_expanded_bytes=config.publish_max_expanded_bytes,
    )


def check_staged(staged: list[Staged], scanner: Scanner) -> list[Refusal]:
    """Step 2: the raw-data rules on every staged file; one refusal per file that breaks one."""
    refusals = []
    for item in staged:
        try:
            validate_key(data_key("job", item.rel))
        except Exception as exc:  # noqa: BLE001 - StoreError: a name no store can hold
            refusals.append(Refusal(item.rel, f"cannot be published under this name ({exc})"))
            continue
        try:
            scanner.scan_file(item.path, item.rel)
        except Refused as exc:
            refusals.append(Refusal(item.rel, str(exc)))
    return refusals


def data_key(job_name: str, rel: str) -> str:
    return f"{job_name}/data/{rel}"


def log_key(job_name: str, run_id: int) -> str:
    return f"{job_name}/logs/{run_id}.log"


def publish_staged(store: BlobStore, job_name: str, staged: list[Staged]) -> list[str]:
    """Step 3: copy the (guarded) private copies to the public store."""
    keys = []
    for item in staged:
        key = data_key(job_name, item.rel)
        store.put_file(key, str(item.path))
        keys.append(key)
    return keys


def publish_log(
    store: BlobStore,
    job_name: str,
    run_id: int,
    log_path: Path,
    scan: Callable[[Path], None] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """Publish the run log; when `scan(path)` (the guard's rules) raises Refused, only the
    scheduler's own `notes` and the reason are published instead."""
    key = log_key(job_name, run_id)
    if not log_path.exists():
        store.put(key, b"")
        return key
    if scan is not None:
        try:
            scan(log_path)
        except Refused as exc:
            store.put(key, _withheld_log(notes, exc))
            return key
    store.put_file(key, str(log_path))
    return key


def _withheld_log(notes: Sequence[str], refusal: Refused) -> bytes:
    """The published log of a run whose console output broke a guard rule: the scheduler's
    own notes (not lines of the log, which the job could have forged) and why."""
    lines = [*notes, f"the command's output was withheld from this published log: {refusal}"]
    return "".join(f"[scheduler] {line}\n" for line in lines).encode()


def tail(text_or_path: str | Path, lines: int = 20) -> str:
    """Last `lines` lines of a log file (for emails and the CLI)."""
    path = Path(text_or_path)
    if not path.exists():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, io.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64 * 1024))
        data = handle.read()
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
