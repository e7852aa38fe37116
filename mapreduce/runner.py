"""The runner interface: one job, several ways to execute it (like mrjob's runners).

A runner takes a `Plan` and `TaskSettings`, runs `tasks.run_map` for every mapper group and
`tasks.run_reduce` for every partition however it likes (forked processes, Dask tasks), writes
the output lines to a stream, and returns a `JobSummary`. A job script failure or bad data under
--strict is raised as JobScriptFailed/BadInputData after the runner has stopped its other work.
"""

from __future__ import annotations

import abc
import dataclasses
import marshal
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from mapreduce.planner import Plan
from mapreduce.tasks import MapResult, ReduceResult, TaskSettings


@dataclasses.dataclass
class JobSummary:
    files: int = 0
    compressed_bytes: int = 0
    uncompressed_bytes: int = 0
    records: int = 0
    downloaded: int = 0
    spills: int = 0
    keys_reduced: int = 0
    values_reduced: int = 0
    bad_lines: dict[str, int] = dataclasses.field(default_factory=dict)
    corrupt_files: dict[str, str] = dataclasses.field(default_factory=dict)
    mapper_seconds: list[float] = dataclasses.field(default_factory=list)
    mapper_cpu_seconds: list[float] = dataclasses.field(default_factory=list)
    mapper_uncompressed_bytes: list[int] = dataclasses.field(default_factory=list)
    reducer_max_block: int = 0
    profiles: list[str] = dataclasses.field(default_factory=list)
    elapsed: float = 0.0

    @property
    def bad_data(self) -> bool:
        return bool(self.bad_lines or self.corrupt_files)

    def describe(self) -> str:
        """The end-of-job report, including every file that had bad data."""
        lines = [
            f"done: {self.records} records from {self.files} files "
            f"({self.compressed_bytes} bytes, {self.uncompressed_bytes} uncompressed), "
            f"{self.downloaded} downloaded, {self.keys_reduced} keys reduced, "
            f"{self.elapsed:.2f}s"
        ]
        rates = _rates(self.mapper_uncompressed_bytes, self.mapper_seconds)
        cpu_rates = _rates(self.mapper_uncompressed_bytes, self.mapper_cpu_seconds)
        if rates and cpu_rates:
            lines.append(
                f"map rate: {sum(rates) / len(rates) / 1e6:.1f} MB/s per mapper (uncompressed, "
                f"{len(rates)} mappers, slowest {max(self.mapper_seconds):.2f}s); "
                f"{sum(cpu_rates) / len(cpu_rates) / 1e6:.1f} MB/s per CPU second"
            )
        if self.corrupt_files:
            lines.append(
                f"bad data: {len(self.corrupt_files)} corrupt file(s) skipped from the error on:"
            )
            lines += [
                f"  {name}: {problem}" for name, problem in sorted(self.corrupt_files.items())
            ]
        if self.bad_lines:
            total = sum(self.bad_lines.values())
            lines.append(
                f"bad data: {total} unparsable line(s) skipped in {len(self.bad_lines)} file(s):"
            )
            lines += [f"  {name}: {count}" for name, count in sorted(self.bad_lines.items())]
        if self.profiles:
            lines.append("profiles (read with python -m pstats FILE):")
            lines += [f"  {path}" for path in self.profiles]
        return "\n".join(lines)


def _rates(sizes: Sequence[int], seconds: Sequence[float]) -> list[float]:
    return [size / sec for size, sec in zip(sizes, seconds, strict=True) if sec > 0]


def summarise(
    plan: Plan, maps: Sequence[MapResult], reduces: Sequence[ReduceResult], profile_dir: Path | None
) -> JobSummary:
    """Fold the task results into one summary (and write profiles, if any were taken)."""
    summary = JobSummary(files=len(plan.files))
    for result in sorted(maps, key=lambda r: r.index):
        summary.compressed_bytes += result.compressed_bytes
        summary.uncompressed_bytes += result.uncompressed_bytes
        summary.records += result.records
        summary.downloaded += result.downloaded
        summary.spills += result.spills
        summary.bad_lines.update(result.bad_lines)
        summary.corrupt_files.update(result.corrupt_files)
        summary.mapper_seconds.append(result.seconds)
        summary.mapper_cpu_seconds.append(result.cpu_seconds)
        summary.mapper_uncompressed_bytes.append(result.uncompressed_bytes)
    for result in reduces:
        summary.keys_reduced += result.keys
        summary.values_reduced += result.values
        summary.reducer_max_block = max(summary.reducer_max_block, result.max_block)
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        for kind, results in (("map", maps), ("reduce", reduces)):
            for result in results:
                if result.profile is not None:
                    path = profile_dir / f"{kind}-{result.index}.prof"
                    path.write_bytes(result.profile)
                    summary.profiles.append(str(path))
    return summary


def load_profile_stats(data: bytes) -> dict:
    """Inverse of the profile bytes a task returns (what `pstats` reads from a .prof file)."""
    return marshal.loads(data)


class Engine(abc.ABC):
    """Executes a planned job; the job script never knows which runner it runs on."""

    name: str

    @abc.abstractmethod
    def run(self, plan: Plan, settings: TaskSettings, output: BinaryIO) -> JobSummary:
        """Run every task of `plan`, write `key<TAB>value` lines to `output`, summarise."""
