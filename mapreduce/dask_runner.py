"""The Dask runner: the same map and reduce tasks as the local engine, on dask.distributed.

Map tasks run `tasks.run_map` on a worker with a private scratch directory and return their
spill runs as bytes, one list per partition, so nothing depends on a shared filesystem except
the input (read from the store, or from --data-dir on the worker's machine). A small task per
(mapper, partition) picks that partition's runs on the worker that holds them, and each reduce
task receives only its own partition. The job script travels as source text (`JobScript`
pickles as its source) and is loaded once per worker process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from mapreduce import progress as progress_bars
from mapreduce.errors import EngineFailure, MapReduceError
from mapreduce.planner import Plan
from mapreduce.runner import Engine, JobSummary, summarise
from mapreduce.tasks import MapResult, ReduceResult, TaskSettings, run_map, run_reduce

# Dask's statistical profiler samples every task's stack every 10 ms, taking the GIL each time;
# mappers are CPU-bound Python, and `--profile` gives exact per-task profiles anyway.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}


def _read_and_remove(path: str) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read()
    os.unlink(path)
    return data


def dask_map(
    index: int, files: list[tuple[str, int]], settings: TaskSettings
) -> tuple[MapResult, list, bytes]:
    """Run one map task on a worker; return (result without runs, runs per partition, output)."""
    scratch = tempfile.mkdtemp(prefix=f"map-{index}-")
    try:
        result = run_map(index, files, settings, scratch)
        runs = [[_read_and_remove(path) for path in partition] for partition in result.runs]
        output = (
            _read_and_remove(result.output)
            if result.output and os.path.exists(result.output)
            else b""
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.runs = []
    result.output = None
    return result, runs, output


def dask_map_meta(outcome: tuple[MapResult, list, bytes]) -> MapResult:
    return outcome[0]


def dask_map_partition(outcome: tuple[MapResult, list, bytes], partition: int) -> list[bytes]:
    runs = outcome[1]
    return runs[partition] if partition < len(runs) else []


def dask_map_output(outcome: tuple[MapResult, list, bytes]) -> bytes:
    return outcome[2]


def dask_reduce(
    partition: int, parts: list[list[bytes]], settings: TaskSettings
) -> tuple[ReduceResult, bytes]:
    """Run one reduce task over the runs every mapper produced for `partition`."""
    scratch = tempfile.mkdtemp(prefix=f"reduce-{partition}-")
    try:
        result = run_reduce(partition, [run for part in parts for run in part], settings, scratch)
        output = (
            _read_and_remove(result.output)
            if result.output and os.path.exists(result.output)
            else b""
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.output = None
    return result, output


@dataclasses.dataclass
class DaskEngine(Engine):
    """Runs a job on an existing scheduler (`scheduler`) or a LocalCluster it starts."""

    scheduler: str | None = None
    workers: int = 2
    show_progress: bool = False
    profile_dir: str | None = None
    name: str = "dask"

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        import dask
        from dask.distributed import Client, LocalCluster

        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            # distributed logs every cluster start and stop at INFO; the job's own report is enough.
            logging.getLogger("distributed").setLevel(logging.WARNING)
        if self.scheduler:
            with Client(self.scheduler, timeout=30) as client:
                yield client
            return
        with (
            dask.config.set(WORKER_CONFIG),
            LocalCluster(
                n_workers=max(1, self.workers),
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # a free port: never collides with another cluster
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client

    def run(self, plan: Plan, settings: TaskSettings, output: BinaryIO) -> JobSummary:
        from dask.distributed import as_completed

        started = time.monotonic()
        with self.client() as client:
            futures: list[Any] = []
            try:
                outcomes = [
                    client.submit(
                        dask_map, index, [(i.key, i.size) for i in group], settings, pure=False
                    )
                    for index, group in enumerate(plan.groups)
                ]
                futures += outcomes
                metas = [client.submit(dask_map_meta, o, pure=False) for o in outcomes]
                futures += metas
                maps: list[MapResult] = []
                sizes = {
                    index: sum(i.size for i in group) for index, group in enumerate(plan.groups)
                }
                with progress_bars.bar("map", plan.total_bytes, "B", self.show_progress) as bar:
                    for future in as_completed(metas):
                        result = _result(future)
                        if result.failure is not None:
                            raise result.failure
                        maps.append(result)
                        bar.update(sizes[result.index])
                reduces: list[ReduceResult] = []
                if settings.script.map_only:
                    for outcome in outcomes:
                        output.write(_result(client.submit(dask_map_output, outcome, pure=False)))
                else:
                    reduce_futures = []
                    for partition in range(settings.reducers):
                        parts = [
                            client.submit(dask_map_partition, o, partition, pure=False)
                            for o in outcomes
                        ]
                        futures += parts
                        reduce_futures.append(
                            client.submit(dask_reduce, partition, parts, settings, pure=False)
                        )
                    futures += reduce_futures
                    with progress_bars.bar("reduce", None, "keys", self.show_progress) as bar:
                        for future in as_completed(reduce_futures):
                            result, _ = _result(future)
                            if result.failure is not None:
                                raise result.failure
                            bar.update(result.keys)
                    for future in reduce_futures:
                        result, data = _result(future)
                        reduces.append(result)
                        output.write(data)
            except BaseException:
                client.cancel(futures)
                raise
        summary = summarise(
            plan, maps, reduces, Path(self.profile_dir) if self.profile_dir else None
        )
        summary.elapsed = time.monotonic() - started
        return summary


def _result(future: Any) -> Any:
    try:
        return future.result()
    except MapReduceError:
        raise
    except Exception as exc:  # KilledWorker, CommClosedError, a task that crashed
        raise EngineFailure(f"dask task {future.key} failed: {exc!r}") from exc
