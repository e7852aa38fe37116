"""Compute the aggregates of some submission dates through the MapReduce engine.

`run_job` runs `aggregates/job_script.py` over the published partitions of the dates (local
processes or Dask, as the caller says); `resolve` turns its groups into `DayAggregate`s: it
looks up each revision's Histograms.json through the RevisionCache for bucket lower bounds,
kind and description, and merges the groups of revisions whose layout is the same.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from aggregates.extract import (
    GROUP_DIMENSIONS,
    SIMPLE_KIND,
    SIMPLE_LAYOUT,
    SIMPLE_PREFIX,
    add_vectors,
    base_name,
)
from pipeline.config import Settings
from pipeline.layout import DIMENSIONS

log = logging.getLogger(__name__)

JOB_SCRIPT = Path(__file__).with_name("job_script.py")
#: Map output a mapper buffers before combining: each value holds a whole record's metrics.
SPILL_RECORDS = 256


@dataclasses.dataclass
class Layout:
    kind: str
    buckets: tuple[int, ...]


@dataclasses.dataclass
class DayAggregate:
    """Everything one submission date contributes to the dashboards.

    `rows` maps (dimension values in GROUP_DIMENSIONS order, metric, layout index) to the
    vector `[submissions, sum, counts...]`; `layouts[i]` gives that vector's bucket bounds.
    """

    date: str
    layouts: list[Layout] = dataclasses.field(default_factory=list)
    descriptions: dict[str, str] = dataclasses.field(default_factory=dict)
    rows: dict[tuple, list] = dataclasses.field(default_factory=dict)
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    _layout_ids: dict[tuple, int] = dataclasses.field(default_factory=dict, repr=False)

    def layout_id(self, kind: str, buckets: tuple[int, ...]) -> int:
        key = (kind, buckets)
        found = self._layout_ids.get(key)
        if found is None:
            found = self._layout_ids[key] = len(self.layouts)
            self.layouts.append(Layout(kind, buckets))
        return found

    def add(self, dims: tuple, metric: str, layout: int, vector: list) -> None:
        key = (*dims, metric, layout)
        existing = self.rows.get(key)
        self.rows[key] = vector if existing is None else add_vectors([existing, vector])

    def skip(self, why: str, submissions: int) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + submissions


@dataclasses.dataclass
class RevisionInfo:
    """What a revision's Histograms.json says about each name: layout and description."""

    layouts: dict[str, Layout]
    descriptions: dict[str, str]


DefinitionsFor = Callable[[str], RevisionInfo | None]


def revision_info_from_cache(cache) -> DefinitionsFor:
    """Adapt a `histograms.revision_cache.RevisionCache` (None for an unusable revision)."""
    from histograms.errors import RevisionError

    memo: dict[str, RevisionInfo | None] = {}

    def lookup(revision: str) -> RevisionInfo | None:
        if revision in memo:
            return memo[revision]
        info = None
        if revision:
            try:
                definitions = cache.get(revision)
                raw = json.loads(cache.path_for(revision).read_bytes())
                info = RevisionInfo(
                    {n: Layout(d.kind, tuple(d.buckets)) for n, d in definitions.items()},
                    {
                        n: str(v.get("description", ""))
                        for n, v in raw.items()
                        if isinstance(v, dict)
                    },
                )
            except (RevisionError, OSError, ValueError) as exc:
                log.warning("no bucket layouts for revision %s: %s", revision, exc)
        memo[revision] = info
        return info

    return lookup


def _definition(info: RevisionInfo, name: str) -> tuple[Layout | None, str]:
    layout = info.layouts.get(name)
    if layout is None and name.startswith("STARTUP_"):
        name = name[len("STARTUP_") :]
        layout = info.layouts.get(name)
    return layout, info.descriptions.get(name, "")


def resolve(
    groups: Iterable[tuple[Sequence, dict[str, list]]], definitions_for: DefinitionsFor
) -> dict[str, DayAggregate]:
    """Job output groups -> one DayAggregate per submission date."""
    days: dict[str, DayAggregate] = {}
    for key, value in groups:
        metrics = value[1]  # ("m", {metric#length: vector}), see merge_metric_maps
        date, revision, *dims = key
        day = days.get(date) or days.setdefault(date, DayAggregate(date))
        info = definitions_for(revision)
        for qualified, vector in metrics.items():
            metric = qualified.rsplit("#", 1)[0]
            if metric.startswith(SIMPLE_PREFIX):
                layout = Layout(SIMPLE_KIND, SIMPLE_LAYOUT)
                day.descriptions.setdefault(
                    metric, f"simple measurement {metric[len(SIMPLE_PREFIX) :]}"
                )
            elif info is None:
                day.skip("revision unavailable", vector[0])
                continue
            else:
                layout, description = _definition(info, base_name(metric))
                if layout is None:
                    day.skip("not in its revision's Histograms.json", vector[0])
                    continue
                if description:
                    day.descriptions.setdefault(metric, description)
            if len(layout.buckets) != len(vector) - 2:
                day.skip("bucket count differs from the definition", vector[0])
                continue
            day.add(tuple(dims), metric, day.layout_id(layout.kind, layout.buckets), vector)
    return days


def date_filter(dates: Sequence[str]) -> dict[str, Any]:
    """An input filter (the schema's shape) selecting the given submission dates."""
    return {
        "version": 1,
        "dimensions": [
            {
                "field_name": name,
                "allowed_values": list(dates) if name == "submission_date" else "*",
            }
            for name in DIMENSIONS
        ],
    }


def read_output(path: Path) -> Iterator[tuple[list, dict]]:
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            key, _, value = line.rstrip("\n").partition("\t")
            yield json.loads(key), json.loads(value)


def run_job(
    settings: Settings,
    dates: Sequence[str],
    *,
    engine: str = "local",
    mappers: int | None = None,
    scheduler: str | None = None,
    work_dir: str | None = None,
    bucket: str | None = None,
) -> tuple[list[tuple[list, dict]], Any]:
    """Run the job script over the dates' published partitions; return (groups, JobSummary)."""
    from mapreduce.job import build_parser
    from mapreduce.job import run_job as run_mapreduce

    with tempfile.TemporaryDirectory(prefix="aggregates-", dir=work_dir) as tmp:
        filter_path = Path(tmp) / "filter.json"
        filter_path.write_text(json.dumps(date_filter(dates)))
        output = Path(tmp) / "groups.txt"
        argv = [
            str(JOB_SCRIPT),
            "-f",
            str(filter_path),
            "-o",
            str(output),
            "-r",
            "1",
            "-m",
            str(mappers or os.cpu_count() or 1),
            "-w",
            str(Path(tmp) / "work"),
            "--engine",
            engine,
            "--spill-records",
            str(SPILL_RECORDS),
            "--no-progress",
        ]
        if bucket:
            argv += ["-b", bucket]
        if scheduler:
            argv += ["--scheduler", scheduler]
        args = build_parser(settings).parse_args(argv)
        summary = run_mapreduce(args, settings)
        return list(read_output(output)), summary


def aggregate_days(
    settings: Settings,
    dates: Sequence[str],
    definitions_for: DefinitionsFor | None = None,
    **job_options: Any,
) -> dict[str, DayAggregate]:
    """The aggregates of `dates` (a date without published data gives an empty DayAggregate)."""
    if definitions_for is None:
        from histograms.revision_cache import RevisionCache

        definitions_for = revision_info_from_cache(RevisionCache.from_settings(settings))
    groups, _summary = run_job(settings, dates, **job_options)
    days = resolve(groups, definitions_for)
    for date in dates:
        days.setdefault(date, DayAggregate(date))
    return days


__all__ = ["GROUP_DIMENSIONS", "DayAggregate", "Layout", "aggregate_days", "resolve"]
