"""`python -m mapreduce.export`: Hive-partitioned Parquet that pyarrow and DuckDB read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

import mapreduce
from mapreduce import synthetic
from mapreduce.export import export_parquet
from pipeline.layout import DIMENSIONS
from pipeline.stores import open_store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def published(settings):
    store = open_store(settings.published_url)
    synthetic.small_dataset(store, partitions=4, records=6)
    return settings


def read_back(out: Path) -> list[tuple[str, dict, dict]]:
    """Every exported row as (docId, dims, record), partition values read as text."""
    strings = pa.schema([pa.field(name, pa.string()) for name in DIMENSIONS])
    table = ds.dataset(out, format="parquet", partitioning=ds.partitioning(strings, flavor="hive"))
    rows = table.to_table().to_pylist()
    return [
        (row["docId"], {name: row[name] for name in DIMENSIONS}, json.loads(row["json"]))
        for row in rows
    ]


def ordered(rows):
    return sorted(rows, key=lambda row: (row[0], sorted(row[1].items())))


def test_export_reads_back_equal_to_the_records_with_pyarrow(published, tmp_path):
    out = tmp_path / "pings"
    result = subprocess.run(
        [sys.executable, "-m", "mapreduce.export", "--format", "parquet", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    expected = list(mapreduce.read())
    assert f"exported {len(expected)} records" in result.stderr
    assert ordered(read_back(out)) == ordered(expected)
    # Hive-style: one directory level per dimension, in path order.
    part = next(out.rglob("*.parquet")).relative_to(out).parts
    assert [piece.split("=")[0] for piece in part[:-1]] == list(DIMENSIONS)


def test_duckdb_queries_the_export(published, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "pings"
    export_parquet({"dimensions": [{"field_name": "reason", "allowed_values": "idle-daily"}]}, out)
    expected: dict[str, int] = {}
    for _key, dims, record in mapreduce.read(
        {"dimensions": [{"field_name": "reason", "allowed_values": "idle-daily"}]}
    ):
        os_name = record["info"]["OS"]
        expected[f"{dims['appVersion']}/{os_name}"] = (
            expected.get(f"{dims['appVersion']}/{os_name}", 0) + 1
        )
    assert expected
    rows = duckdb.sql(
        f"""SELECT appVersion || '/' || json_extract_string(json, '$.info.OS'), count(*)
            FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true,
                              hive_types_autocast = false)
            WHERE reason = 'idle_daily' GROUP BY 1"""
    ).fetchall()
    assert dict(rows) == expected


def test_namespaces_export_uses_their_dimensions(settings, tmp_path):
    store = open_store(settings.published_url)
    store.put(
        "namespaces/glean/metrics/1/20261206/o1.lz4",
        synthetic.encode_lines([("d1", json.dumps({"ping_info": {"seq": 1}}))]),
    )
    out = tmp_path / "glean"
    assert export_parquet({"source": "namespaces", "dimensions": []}, out) == 1
    table = ds.dataset(out, format="parquet", partitioning="hive").to_table().to_pylist()
    assert [(row["docId"], row["namespace"], row["docType"]) for row in table] == [
        ("d1", "glean", "metrics")
    ]


def test_export_refuses_a_non_empty_directory(published, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = subprocess.run(
        [sys.executable, "-m", "mapreduce.export", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "exists and is not an empty directory" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"
