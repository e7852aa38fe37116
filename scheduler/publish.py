"""Publishing a run's output to the public store, behind a guard: published data is public.

Layout: every file under the job's output directory goes to `<job_name>/data/<relative path>`
and the run log to `<job_name>/logs/<run_id>.log` in `TELEMETRY_PUBLIC_URL`.

Guard policy (all or nothing): the whole output is checked first; if any file is refused
(looks like raw records `docId<TAB>{json}`, even gzip/lz4 compressed; is larger than the
limit; or is a symlink, which could point at a private file), *no* data file is published,
every refusal is written to the run log and the run fails. A partial publication could look
complete to its readers, so none is safer. Files from earlier runs are left in place.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import re
from pathlib import Path

from pipeline.stores import BlobStore

RAW_RECORD = re.compile(
    rb"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\t[{\[]"
)
SNIFF_BYTES = 256 * 1024
LZ4_MAGIC = b"\x04\x22\x4d\x18"


@dataclasses.dataclass(frozen=True)
class Refusal:
    path: str
    reason: str


def _head(path: Path) -> bytes:
    """The first SNIFF_BYTES of the file's content, decompressed when gzip or lz4."""
    with open(path, "rb") as handle:
        raw = handle.read(SNIFF_BYTES)
    try:
        if raw.startswith(b"\x1f\x8b"):
            with gzip.GzipFile(fileobj=open(path, "rb")) as stream:
                return stream.read(SNIFF_BYTES)
        if raw.startswith(LZ4_MAGIC):
            import lz4.frame

            with lz4.frame.open(path, "rb") as stream:
                return stream.read(SNIFF_BYTES)
    except (OSError, EOFError, RuntimeError):
        return raw  # a corrupt compressed file is not raw records; judge the bytes we have
    return raw


def looks_like_raw_records(path: Path) -> bool:
    """True when any of the first lines is `<uuid>\\t{json}`: the pipeline's private record format."""
    head = _head(path)
    return any(RAW_RECORD.match(line) for line in head.split(b"\n")[:1000])


def output_files(output_dir: Path) -> list[tuple[str, Path]]:
    """(relative key, path) for every entry under output_dir, sorted; symlinks included so the
    guard can refuse them."""
    found = []
    for dirpath, dirnames, filenames in os.walk(output_dir):
        dirnames.sort()
        for name in sorted(filenames) + [
            d for d in dirnames if os.path.islink(os.path.join(dirpath, d))
        ]:
            path = Path(dirpath) / name
            found.append((path.relative_to(output_dir).as_posix(), path))
    return found


def check_outputs(files: list[tuple[str, Path]], max_file_bytes: int) -> list[Refusal]:
    refusals = []
    for rel, path in files:
        if path.is_symlink():
            refusals.append(Refusal(rel, "is a symbolic link (only regular files are published)"))
        elif not path.is_file():
            refusals.append(Refusal(rel, "is not a regular file"))
        elif path.stat().st_size > max_file_bytes:
            refusals.append(
                Refusal(
                    rel,
                    f"is {path.stat().st_size} bytes, over the publish limit of {max_file_bytes} bytes",
                )
            )
        elif looks_like_raw_records(path):
            refusals.append(
                Refusal(
                    rel,
                    "looks like raw telemetry records (docId<TAB>json lines); publish aggregates only",
                )
            )
    return refusals


def data_key(job_name: str, rel: str) -> str:
    return f"{job_name}/data/{rel}"


def log_key(job_name: str, run_id: int) -> str:
    return f"{job_name}/logs/{run_id}.log"


def publish_outputs(store: BlobStore, job_name: str, files: list[tuple[str, Path]]) -> list[str]:
    keys = []
    for rel, path in files:
        key = data_key(job_name, rel)
        store.put_file(key, str(path))
        keys.append(key)
    return keys


def publish_log(store: BlobStore, job_name: str, run_id: int, log_path: Path) -> str:
    key = log_key(job_name, run_id)
    if log_path.exists():
        store.put_file(key, str(log_path))
    else:
        store.put(key, b"")
    return key


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
