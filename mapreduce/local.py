"""The local engine: mappers and reducers as forked processes on this machine.

Each mapper streams its files and spills sorted runs per reducer into a private work
directory; when every mapper is done, each reducer merges the runs of its partition from all
mappers. Children report through a pipe; progress flows through one shared counter per child,
so the parent can draw a bar without the children doing any I/O for it. If a child reports a
failure, or dies without reporting, the parent terminates the other children it started (by
their Process objects) and raises.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from mapreduce import progress as progress_bars
from mapreduce.errors import EngineFailure
from mapreduce.planner import Plan
from mapreduce.runner import Engine, JobSummary, summarise
from mapreduce.tasks import TaskSettings, run_map, run_reduce

log = logging.getLogger(__name__)
_CONTEXT = multiprocessing.get_context("fork")
_POLL_SECONDS = 0.2


@dataclasses.dataclass
class _Child:
    index: int
    process: Any
    conn: multiprocessing.connection.Connection
    counter: Any


def _child_main(conn, counter, fn: Callable[..., Any], args: tuple) -> None:
    def progress(amount: int) -> None:
        counter.value += amount

    try:
        result = fn(*args, progress=progress)
    except BaseException as exc:  # report anything, so the parent never waits on a dead pipe
        conn.send(EngineFailure(f"{fn.__name__} crashed: {exc!r}"))
    else:
        conn.send(result)
    finally:
        conn.close()


def run_children(
    tasks: list[tuple[Callable[..., Any], tuple]],
    concurrency: int,
    on_progress: Callable[[int], None],
    describe: str,
) -> list[Any]:
    """Run `fn(*args, progress=...)` for each task in forked children; return the results.

    A result whose `failure` is set stops every other child and is raised.
    """
    pending = list(enumerate(tasks))
    running: dict[int, _Child] = {}
    results: dict[int, Any] = {}
    reported = 0
    try:
        while pending or running:
            while pending and len(running) < concurrency:
                index, (fn, args) = pending.pop(0)
                receiver, sender = _CONTEXT.Pipe(duplex=False)
                counter = _CONTEXT.Value("q", 0, lock=False)
                process = _CONTEXT.Process(
                    target=_child_main,
                    args=(sender, counter, fn, args),
                    name=f"{describe}-{index}",
                    daemon=True,
                )
                process.start()
                sender.close()
                running[index] = _Child(index, process, receiver, counter)
            waitables = [c.conn for c in running.values()] + [
                c.process.sentinel for c in running.values()
            ]
            multiprocessing.connection.wait(waitables, timeout=_POLL_SECONDS)
            for index, child in list(running.items()):
                if child.conn.poll():
                    try:
                        result = child.conn.recv()
                    except EOFError:
                        result = None
                    child.process.join()
                elif not child.process.is_alive():
                    result = None
                else:
                    continue
                del running[index]
                child.conn.close()
                if result is None:
                    raise EngineFailure(
                        f"{describe} {index} died with exit code {child.process.exitcode} without "
                        "reporting (killed? out of memory?)"
                    )
                if isinstance(result, EngineFailure):
                    raise result
                if result.failure is not None:
                    raise result.failure
                results[index] = (result, child.counter.value)
            total = sum(c.counter.value for c in running.values()) + sum(
                v for _, v in results.values()
            )
            if total > reported:
                on_progress(total - reported)
                reported = total
    finally:
        for child in running.values():
            if child.process.is_alive():
                child.process.terminate()
        for child in running.values():
            child.process.join(10)
            child.conn.close()
    return [results[i][0] for i in range(len(tasks))]


@dataclasses.dataclass
class LocalEngine(Engine):
    """Mappers and reducers as processes on this machine; spills in `work_dir`."""

    work_dir: str
    show_progress: bool = False
    keep_work: bool = False
    profile_dir: str | None = None
    name: str = "local"

    def run(self, plan: Plan, settings: TaskSettings, output: BinaryIO) -> JobSummary:
        started = time.monotonic()
        Path(self.work_dir).mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="job-", dir=self.work_dir))
        try:
            map_tasks = [
                (run_map, (index, [(i.key, i.size) for i in group], settings, str(scratch)))
                for index, group in enumerate(plan.groups)
            ]
            with progress_bars.bar("map", plan.total_bytes, "B", self.show_progress) as bar:
                maps = run_children(map_tasks, len(map_tasks), bar.update, "mapper")
            reduces = []
            if settings.script.map_only:
                _concatenate([r.output for r in maps], output)
            else:
                reduce_tasks = [
                    (
                        run_reduce,
                        (
                            partition,
                            [run for m in maps for run in m.runs[partition]],
                            settings,
                            str(scratch),
                        ),
                    )
                    for partition in range(settings.reducers)
                ]
                with progress_bars.bar("reduce", None, "keys", self.show_progress) as bar:
                    reduces = run_children(
                        reduce_tasks, max(1, len(plan.groups)), bar.update, "reducer"
                    )
                _concatenate([r.output for r in reduces], output)
            summary = summarise(
                plan, maps, reduces, Path(self.profile_dir) if self.profile_dir else None
            )
        finally:
            if not self.keep_work:
                shutil.rmtree(scratch, ignore_errors=True)
        summary.elapsed = time.monotonic() - started
        return summary


def _concatenate(parts: list[str | None], output: BinaryIO) -> None:
    """Stream part files into the output in task order."""
    for part in parts:
        if part is None:
            continue
        with open(part, "rb") as source:
            shutil.copyfileobj(source, output, 1024 * 1024)
