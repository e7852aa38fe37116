"""Planning a job: which files to read and how to split them across mappers.

Listing goes through `pipeline.layout.list_matching`, which descends the published layout one
dimension at a time and never lists a directory the filter excludes. Files are assigned to
mappers largest first, each to the mapper with the fewest bytes so far (the greedy
"longest processing time" rule), which keeps every mapper within one file of the mean.
"""

from __future__ import annotations

import dataclasses
import heapq

from pipeline.layout import InputFilter, list_matching
from pipeline.stores.base import BlobStore, ObjectInfo


@dataclasses.dataclass(frozen=True)
class Plan:
    files: tuple[ObjectInfo, ...]
    groups: tuple[tuple[ObjectInfo, ...], ...]  # one per mapper, never empty
    reducers: int  # 0 for a map-only job

    @property
    def total_bytes(self) -> int:
        return sum(info.size for info in self.files)

    def describe(self) -> str:
        """The plan as people read it before the job starts."""
        partitions = len({info.key.rpartition("/")[0] for info in self.files})
        lines = [
            f"plan: {len(self.files)} files in {partitions} partitions, "
            f"{_human(self.total_bytes)} ({self.total_bytes} bytes), {len(self.groups)} mappers, "
            + (f"{self.reducers} reducers" if self.reducers else "map-only")
        ]
        for index, group in enumerate(self.groups):
            size = sum(info.size for info in group)
            lines.append(f"  mapper {index}: {len(group)} files, {_human(size)}")
        return "\n".join(lines)


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GiB"


def list_inputs(store: BlobStore, input_filter: InputFilter) -> list[ObjectInfo]:
    """Every published object the filter selects, listed with pruning."""
    return list(list_matching(store, input_filter))


def split_balanced(files: list[ObjectInfo], mappers: int) -> list[list[ObjectInfo]]:
    """Split `files` into at most `mappers` non-empty groups of nearly equal total size."""
    count = max(1, min(mappers, len(files)))
    heap = [(0, index) for index in range(count)]
    groups: list[list[ObjectInfo]] = [[] for _ in range(count)]
    for info in sorted(files, key=lambda i: (-i.size, i.key)):
        load, index = heapq.heappop(heap)
        groups[index].append(info)
        heapq.heappush(heap, (load + info.size, index))
    for group in groups:
        group.sort(key=lambda i: i.key)
    return [g for g in groups if g]


def make_plan(files: list[ObjectInfo], mappers: int, reducers: int) -> Plan:
    groups = split_balanced(files, mappers)
    return Plan(tuple(files), tuple(tuple(g) for g in groups), reducers)
