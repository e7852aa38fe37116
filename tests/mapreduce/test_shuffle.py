"""Planning, spilling and merging: the parts of the engine that decide memory and correctness."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

from mapreduce import shuffle, synthetic
from mapreduce.planner import make_plan, split_balanced
from mapreduce.script import load_job_script, load_source
from mapreduce.shuffle import (
    BLOCK_RECORDS,
    PartitionedSpiller,
    RunReader,
    canonical_key,
    group_records,
)
from mapreduce.tasks import StoreOpener, TaskSettings, run_map, run_reduce
from pipeline.stores import ObjectInfo, open_store


def test_files_are_split_across_mappers_balanced_by_size():
    sizes = [900, 850, 400, 300, 300, 200, 120, 100, 90, 50, 40, 10]
    files = [ObjectInfo(f"k{i}", s) for i, s in enumerate(sizes)]
    groups = split_balanced(files, 3)
    assert sorted(i.key for g in groups for i in g) == sorted(i.key for i in files)
    loads = [sum(i.size for i in g) for g in groups]
    assert max(loads) - min(loads) <= max(sizes) // 2
    assert max(loads) <= sum(sizes) / 3 + max(sizes) / 2


def test_never_more_mappers_than_files_and_plan_reports_them():
    plan = make_plan([ObjectInfo("p/q/a", 5), ObjectInfo("p/q/b", 7), ObjectInfo("p/r/c", 1)], 8, 2)
    assert len(plan.groups) == 3
    text = plan.describe()
    assert "3 files in 2 partitions" in text and "13 bytes" in text
    assert "3 mappers, 2 reducers" in text


def test_tuple_and_list_keys_are_one_key_and_dict_keys_are_canonical():
    assert canonical_key(("a", 1)) == canonical_key(["a", 1])
    assert canonical_key({"b": 1, "a": 2}) == canonical_key({"a": 2, "b": 1})
    records = sorted(
        [(canonical_key(k), k, v) for k, v in [(("a", 1), 1), (["a", 1], 2), ("b", 3)]],
        key=lambda r: r[0],
    )
    groups = [(key, list(values)) for key, values in group_records(records)]
    assert sorted(sorted(v) for _, v in groups) == [[1, 2], [3]]


def test_combine_runs_as_the_buffer_spills(tmp_path):
    calls = []

    def combine(key, values, context):
        calls.append(key)
        context.write(key, sum(values))

    spiller = PartitionedSpiller(tmp_path, "m0", 3, combine, spill_records=1000)
    for i in range(5000):
        spiller.write(f"key{i % 10}", 1)
    spiller.spill()
    assert spiller.spills == 5
    assert len(calls) == 50  # 10 keys combined in each of 5 spills
    records = [r for partition in spiller.runs for run in partition for r in RunReader(run)]
    assert len(records) == 50
    totals: dict[str, int] = {}
    for _, key, value in records:
        totals[key] = totals.get(key, 0) + value
    assert totals == {f"key{i}": 500 for i in range(10)}
    for partition, runs in enumerate(spiller.runs):
        for run in runs:
            assert all(shuffle.partition_of(r[0], 3) == partition for r in RunReader(run))


def test_job_script_pickles_as_source_and_reloads(tmp_path):
    path = tmp_path / "job.py"
    path.write_text("class Pair:\n    pass\n\ndef map(k, d, v, c):\n    c.write(k, 1)\n")
    script = load_job_script(path)
    assert script.map_only
    again = pickle.loads(pickle.dumps(script))
    assert again.source == script.source
    assert load_source(script.source, str(path)) is again  # loaded once per process


SKEWED = """
from mapreduce.shuffle import RunReader

VALUES_PER_RECORD = 100_000
seen = {"iterator": True, "count": 0, "blocks_at_first_value": None, "blocks_at_end": None}

def map(key, dims, value, context):
    base = int(key.split("-")[1]) * VALUES_PER_RECORD
    for i in range(VALUES_PER_RECORD):
        context.write("hot", base + i)
    context.write("cold", 1)

def reduce(key, values, context):
    if iter(values) is not values or isinstance(values, (list, tuple)):
        seen["iterator"] = False
    count = total = 0
    for value in values:
        if key == "hot" and count == 0:
            seen["blocks_at_first_value"] = RunReader.blocks_read
        count += 1
        total += value
    if key == "hot":
        seen["blocks_at_end"] = RunReader.blocks_read
    seen["count"] += count
    context.write(key, [count, total])
"""


def test_a_skewed_key_with_a_million_values_is_streamed_to_reduce(tmp_path):
    """One key with 1,000,000 values: reduce() gets a lazy iterator and the merge reads the
    spills a block at a time while reduce consumes them. Counted, not timed: when the first
    value reaches reduce, at most one block per run has been read; by the end, every block."""
    store = open_store(f"file://{tmp_path / 'published'}")
    dims = synthetic.partition_dims(0)
    key = synthetic.write_partition(store, dims, "skew", [(f"doc-{i}", "{}") for i in range(10)])
    script_path = tmp_path / "skewed.py"
    script_path.write_text(SKEWED)
    script = load_job_script(script_path)
    settings = TaskSettings(
        script=script,
        reducers=2,
        data_dir=str(tmp_path / "cache"),
        spill_records=20_000,
        store_opener=StoreOpener(store.url),
    )
    work = tmp_path / "work"
    work.mkdir()
    mapped = run_map(0, [(key, 1)], settings, str(work))
    assert mapped.failure is None
    assert (
        mapped.spills == 51
    )  # 1,000,010 writes spilled every 20,000 records: mapper memory bounded too
    hot = shuffle.partition_of(canonical_key("hot"), 2)
    runs = mapped.runs[hot]
    assert len(runs) == 51

    RunReader.max_block_seen = RunReader.blocks_read = 0
    seen = sys.modules[f"mapreduce_job_{_digest(SKEWED)}"].seen
    reduced = run_reduce(hot, runs, settings, str(work))
    assert reduced.failure is None
    assert seen["iterator"] is True
    assert seen["count"] == reduced.values
    lines = dict(line.split("\t") for line in Path(reduced.output).read_text().splitlines())
    assert lines["hot"] == f"[1000000, {sum(range(1_000_000))}]"
    assert reduced.max_block <= BLOCK_RECORDS
    total_blocks = RunReader.blocks_read
    assert total_blocks >= 1_000_000 // BLOCK_RECORDS
    assert seen["blocks_at_first_value"] <= len(runs) + 1, seen
    assert seen["blocks_at_end"] >= total_blocks - 1, seen


def _digest(source: str) -> str:
    import hashlib

    return hashlib.sha256(source.encode()).hexdigest()[:16]


@pytest.mark.parametrize("value", ["plain", 5, [1, 2], {"a": 1}, None, 1.5])
def test_output_lines_are_key_tab_value_with_json_for_non_strings(value):
    from mapreduce.output import format_line

    line = format_line(("k", 1), value)
    key, text = line.rstrip("\n").split("\t")
    assert key == '["k", 1]'
    assert text == (value if isinstance(value, str) else __import__("json").dumps(value))


def test_histogram_aggregate_example_reads_v1_records_and_v4_pings():
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "mapreduce" / "examples" / "histogram_aggregate.py"
    spec = importlib.util.spec_from_file_location("histogram_aggregate", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    class Context:
        def __init__(self):
            self.written = []

        def write(self, key, value):
            self.written.append((key, value))

    v1 = {"ver": 2, "histograms": {"GC_MS": [1, 2, 3, -1, -1, -1, -1, -1]}}
    v4 = {"type": "main", "payload": {"histograms": {"GC_MS": [4, 5, 6, 10, -1, -1, -1, -1]}}}
    context = Context()
    dims = ["idle-daily", "Firefox", "release", "23.0.1", "20130814063812", "20130820"]
    example.map("a", dims, json.dumps(v1), context)
    example.map("b", dims, json.dumps(v4), context)
    example.map("c", dims, json.dumps({"payload": {"histograms": {}}}), context)
    assert [value["histogram"] for _, value in context.written] == [
        v1["histograms"]["GC_MS"],
        v4["payload"]["histograms"]["GC_MS"],
    ]
    reduced = Context()
    example.reduce(("release", "23.0.1"), [value for _, value in context.written], reduced)
    [(_, total)] = reduced.written
    assert total["histogram"] == [5, 7, 9, -1, -1, -1, -1, -1] and total["submissions"] == 2
