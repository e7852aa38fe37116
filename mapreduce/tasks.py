"""The two units of work every engine runs: one map task and one reduce task.

These functions know nothing about processes or clusters: the local engine calls them in
forked processes, the Dask runner in worker tasks. A failure of the job script or bad data
under --strict is *returned* in the result (`failure`), not raised, so that an engine can stop
the other tasks and report the key, file and traceback exactly once.
"""

from __future__ import annotations

import cProfile
import dataclasses
import functools
import marshal
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mapreduce.errors import BadInputData, InputUnavailable, JobScriptFailed, MapReduceError
from mapreduce.fetch import open_input
from mapreduce.output import FORMATTERS
from mapreduce.reader import FileStats, read_records
from mapreduce.script import Context, JobScript
from mapreduce.shuffle import (
    DEFAULT_SPILL_RECORDS,
    PartitionedSpiller,
    RunSource,
    group_records,
    merge_runs,
)
from pipeline.errors import PipelineError
from pipeline.layout import ERRORS, SOURCE_DIMENSIONS, source_dimensions
from pipeline.stores import BlobStore, open_store

Progress = Callable[[int], None]


def _no_progress(_: int) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class StoreOpener:
    """A picklable way to open the published store inside a worker process."""

    url: str
    endpoint_url: str | None = None

    def __call__(self) -> BlobStore:
        return open_store(self.url, setting="--bucket", endpoint_url=self.endpoint_url)


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    """Everything a task needs besides its inputs; identical for every task of a job."""

    script: JobScript
    reducers: int
    data_dir: str
    local_only: bool = False
    delete_data: bool = False
    strict: bool = False
    profile: bool = False
    spill_records: int = DEFAULT_SPILL_RECORDS
    store_opener: Callable[[], BlobStore] | None = None
    output_format: str = "tsv"  # a key of mapreduce.output.FORMATTERS


@dataclasses.dataclass
class MapResult:
    index: int
    records: int = 0
    compressed_bytes: int = 0
    uncompressed_bytes: int = 0
    downloaded: int = 0
    bad_lines: dict[str, int] = dataclasses.field(default_factory=dict)
    corrupt_files: dict[str, str] = dataclasses.field(default_factory=dict)
    runs: list[list[RunSource]] = dataclasses.field(default_factory=list)
    spills: int = 0
    output: str | None = None  # map-only jobs: the part file of formatted lines
    failure: MapReduceError | None = None
    profile: bytes | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # user+system CPU of the task: its rate when it has a core to itself


@dataclasses.dataclass
class ReduceResult:
    index: int
    keys: int = 0
    values: int = 0
    output: str | None = None
    failure: MapReduceError | None = None
    profile: bytes | None = None
    max_block: int = 0
    seconds: float = 0.0


def _profiled(enabled: bool, fn: Callable[[], Any]) -> tuple[Any, bytes | None]:
    if not enabled:
        return fn(), None
    profiler = cProfile.Profile()
    result = profiler.runcall(fn)
    profiler.create_stats()
    return result, marshal.dumps(profiler.stats)


def run_map(
    index: int,
    files: list[tuple[str, int]],
    settings: TaskSettings,
    work_dir: str,
    progress: Progress = _no_progress,
) -> MapResult:
    """Map every record of `files` ((key, size) pairs), spilling partitions into `work_dir`."""
    started, cpu_started = time.monotonic(), time.process_time()
    result = MapResult(index)
    body = functools.partial(_map_files, result, files, settings, Path(work_dir), progress)
    _, result.profile = _profiled(settings.profile, body)
    result.seconds = time.monotonic() - started
    result.cpu_seconds = time.process_time() - cpu_started
    return result


def _map_files(
    result: MapResult,
    files: list[tuple[str, int]],
    settings: TaskSettings,
    work_dir: Path,
    progress: Progress,
) -> None:
    script = settings.script
    store = settings.store_opener() if settings.store_opener and not settings.local_only else None
    spiller: PartitionedSpiller | None = None
    out = None
    if script.map_only:
        result.output = str(work_dir / f"map-{result.index}.out")
        out = open(result.output, "w", encoding="utf-8", buffering=1024 * 1024)  # noqa: SIM115
        write = out.write
        format_line = FORMATTERS[settings.output_format]

        def emit(key: Any, value: Any) -> None:
            write(format_line(key, value))

        context = Context(emit)
    else:
        spiller = PartitionedSpiller(
            work_dir,
            f"map-{result.index}",
            settings.reducers,
            script.combine,
            settings.spill_records,
        )
        context = Context(spiller.write)
    try:
        result.failure = _map_each_file(result, files, settings, store, spiller, context, progress)
    finally:
        if out is not None:
            out.close()
    if spiller is not None:
        result.runs = spiller.runs
        result.spills = spiller.spills


def _map_each_file(
    result: MapResult,
    files: list[tuple[str, int]],
    settings: TaskSettings,
    store: BlobStore | None,
    spiller: PartitionedSpiller | None,
    context: Context,
    progress: Progress,
) -> MapReduceError | None:
    """Map every file; return the failure that stops the task, if any.

    Only exceptions raised by the job script (map, or combine while a write spills) are
    blamed on it; a file that cannot be fetched or read is an InputUnavailable.
    """
    map_fn = settings.script.map
    for key, size in files:
        tree, dims = source_dimensions(key)
        dim_values = [dims[name] for name in SOURCE_DIMENSIONS[tree]]
        stats = FileStats(key)
        try:
            opened = open_input(store, key, size, settings.data_dir, settings.local_only)
        except (OSError, PipelineError) as exc:
            return InputUnavailable(key, str(exc))
        result.downloaded += opened.downloaded
        try:
            with opened.stream as stream:
                for doc_id, value in read_records(
                    stream,
                    stats,
                    strict=settings.strict,
                    on_progress=progress,
                    keyed=tree != ERRORS,
                ):
                    try:
                        map_fn(doc_id, list(dim_values), value, context)
                    except Exception:
                        return _script_failure(spiller, "map", doc_id, key)
        except BadInputData as exc:
            return exc
        except (OSError, PipelineError) as exc:
            return InputUnavailable(key, str(exc))
        result.records += stats.records
        result.compressed_bytes += size
        result.uncompressed_bytes += stats.uncompressed_bytes
        if stats.bad_lines:
            result.bad_lines[key] = stats.bad_lines
        if stats.corrupt:
            result.corrupt_files[key] = stats.corrupt
        if settings.delete_data and opened.cached_path:
            os.unlink(opened.cached_path)
    if spiller is not None:
        try:
            spiller.spill()
        except Exception:
            return _script_failure(spiller, "combine", None, "")
    return None


def _script_failure(
    spiller: PartitionedSpiller | None, phase: str, key: Any, file: str
) -> JobScriptFailed:
    """Blame the right phase: a write from map() may have triggered a spill that ran combine()."""
    if spiller is not None and spiller.combine_key is not None:
        phase, key = "combine", spiller.combine_key
    return JobScriptFailed(phase, key, file, traceback.format_exc())


def run_reduce(
    index: int,
    sources: list[RunSource],
    settings: TaskSettings,
    work_dir: str,
    progress: Progress = _no_progress,
) -> ReduceResult:
    """Merge the runs of one partition and reduce each key; output goes to a part file."""
    started = time.monotonic()
    result = ReduceResult(index)
    body = functools.partial(_reduce_runs, result, sources, settings, Path(work_dir), progress)
    _, result.profile = _profiled(settings.profile, body)
    result.seconds = time.monotonic() - started
    return result


class _CountingIterator:
    """Passes values through to reduce() while counting them (for the summary)."""

    __slots__ = ("inner", "count")

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.count = 0

    def __iter__(self) -> _CountingIterator:
        return self

    def __next__(self) -> Any:
        item = next(self.inner)
        self.count += 1
        return item


def _reduce_runs(
    result: ReduceResult,
    sources: list[RunSource],
    settings: TaskSettings,
    work_dir: Path,
    progress: Progress,
) -> None:
    from mapreduce.shuffle import RunReader

    script = settings.script
    scratch = work_dir / f"reduce-{result.index}.merge"
    scratch.mkdir(exist_ok=True)
    result.output = str(work_dir / f"reduce-{result.index}.out")
    current_key: Any = None
    phase = "setup_reduce"
    with open(result.output, "w", encoding="utf-8", buffering=1024 * 1024) as out:
        write = out.write
        format_line = FORMATTERS[settings.output_format]

        def emit(key: Any, value: Any) -> None:
            write(format_line(key, value))

        context = Context(emit)
        reduce_fn = script.reduce
        try:
            if script.setup_reduce is not None:
                script.setup_reduce(context)
            phase = "reduce"
            pending = 0
            for key, values in group_records(merge_runs(sources, scratch)):
                current_key = key
                counted = _CountingIterator(values)
                reduce_fn(key, counted, context)
                result.keys += 1
                result.values += counted.count
                pending += 1
                if pending >= 256:
                    progress(pending)
                    pending = 0
            progress(pending)
        except Exception:
            result.failure = JobScriptFailed(phase, current_key, "", traceback.format_exc())
    result.max_block = RunReader.max_block_seen
