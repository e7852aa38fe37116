"""LazyRecord(value) behaves like loads(value) for everything a job can do with the dict.

Each text is read both ways and every job-visible operation compared: indexing, get, in,
iteration, len, keys/items/values, ==, JSON dumping (the job's output line), pickling (a spill),
deep lookups; once with the native scanner and once without it. The example jobs that now read
lazily must write exactly what their full-parse versions (the code they had before) wrote.
"""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest

from mapreduce import lazyjson, synthetic
from mapreduce.lazyjson import LazyRecord, to_jsonable
from mapreduce.output import format_line
from pipeline.stores import open_store

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "mapreduce" / "examples"

TEXTS = {
    "converted record": json.dumps(
        synthetic.make_body(
            random.Random(3),
            {
                "reason": "idle-daily",
                "appName": "Firefox",
                "appVersion": "23.0.1",
                "appBuildID": "20130814063812",
                "appUpdateChannel": "release",
            },
            "WINNT",
        ),
        separators=(",", ":"),
    ),
    "v4 ping with whitespace": json.dumps(
        {
            "type": "main",
            "payload": {"histograms": {"GC_MS": [1, 2, -1]}, "info": {"reason": "daily"}},
            "environment": {"system": {"os": {"name": "Linux"}}},
        },
        indent=2,
    ),
    "empty": "{}",
    "spaced empty": " { \n } ",
    "scalars": '{"t": true, "f": false, "n": null, "i": -12, "x": 1.5e-3, "s": "", "z": 0}',
    "big integer": '{"id": 123456789012345678901234567890, "small": 3}',
    "tricky strings": r'{"a": "}{][,:\"", "b": "\\", "c": "\\\"}", "d": ["]", "{"], "e": {"\"k": 1}}',
    "escaped and repeated names": r'{"in\u0066o": {"OS": "A"}, "info": {"OS": "B"}, "x": 1, "x": 2}',
    "non-ASCII": '{"pays": "Côte d’Ivoire", "名前": {"値": "日本"}, "emoji": "\U0001f600", "k": 7}',
    "nested arrays": '{"h": [[1, [2, {"a": [3]}]], {}], "o": {"p": {"q": {"r": [null]}}}}',
}

BROKEN = ['{"a": 1,}', '{"a" 1}', '{"a": [1, 2}', '{"a": 1} x', '{"a": 1}{}', "{'a': 1}", '{"a"}']


@pytest.fixture(params=["scanner", "no scanner"])
def scanner(request, monkeypatch):
    if request.param == "no scanner":
        for name in ("_index", "_find", "_span"):
            monkeypatch.setattr(lazyjson, name, None)
    elif lazyjson._index is None:
        pytest.skip("mapreduce._jsonscan is not built (make setup builds it)")
    return request.param


def paths(value, prefix=()):
    """Every key path into the objects of `value`."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_behaves_like_the_parsed_dict(scanner, text):
    parsed = orjson.loads(text)
    record = LazyRecord(text)
    assert isinstance(record, Mapping)
    for key in parsed:
        assert record[key] == parsed[key]
        assert record.get(key) == parsed[key]
        assert key in record
    for missing in ("nope", "", "INFO", "in\\u0066o"):
        assert (missing in record) == (missing in parsed)
        assert record.get(missing) == parsed.get(missing)
        assert record.get(missing, 42) == parsed.get(missing, 42)
        if missing not in parsed:
            with pytest.raises(KeyError):
                record[missing]
    assert list(record) == list(parsed)
    assert list(reversed(record)) == list(reversed(parsed))
    assert len(record) == len(parsed)
    assert list(record.keys()) == list(parsed.keys())
    assert list(record.items()) == list(parsed.items())
    assert list(record.values()) == list(parsed.values())
    assert record == parsed and parsed == record and not (record != parsed)
    assert record == LazyRecord(text)
    assert record != {**parsed, "extra": 1} and record != [] and record != text
    assert record.to_dict() == parsed and dict(record) == parsed
    assert repr(record) == repr(parsed)
    assert format_line("k", record) == format_line("k", parsed)
    assert json.dumps(record, default=to_jsonable) == json.dumps(parsed)
    assert pickle.loads(pickle.dumps(record)) == parsed
    with pytest.raises(TypeError):
        hash(record)


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_get_path_reads_what_indexing_would(scanner, text):
    parsed = orjson.loads(text)
    for path in paths(parsed):
        expected = parsed
        for key in path:
            expected = expected[key]
        # a fresh record each time: get_path on a record nothing was read from yet
        assert LazyRecord(text).get_path(*path) == expected
    record = LazyRecord(text)
    for key in parsed:
        record.get(key)  # once members are parsed, get_path walks the dicts instead
    for path in paths(parsed):
        expected = parsed
        for key in path:
            expected = expected[key]
        assert record.get_path(*path) == expected
    for path in [("nope",), ("nope", "deeper"), *((*p, "nope") for p in paths(parsed))]:
        assert LazyRecord(text).get_path(*path) is None
        assert LazyRecord(text).get_path(*path, default=0) == 0


def test_get_path_through_a_non_object_gives_the_default(scanner):
    text = '{"a": [1, {"b": 2}], "n": null, "s": "x", "o": {"b": 3}}'
    for path in [("a", "b"), ("n", "b"), ("s", "b"), ("o", "b", "c")]:
        assert LazyRecord(text).get_path(*path, default="d") == "d"
    assert LazyRecord(text).get_path("o", "b") == 3
    with pytest.raises(TypeError):
        LazyRecord(text).get_path()


@pytest.mark.parametrize("text", BROKEN)
def test_text_that_is_not_an_object_raises_as_loads_does(scanner, text):
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)
    with pytest.raises(orjson.JSONDecodeError):
        len(LazyRecord(text))
    with pytest.raises(orjson.JSONDecodeError):
        LazyRecord(text).get("a")


def test_a_broken_member_raises_when_read_and_only_then(scanner):
    text = '{"a": 1, "b": tru, "c": [1,, 2]}'
    record = LazyRecord(text)
    for key in ("b", "c"):
        with pytest.raises(orjson.JSONDecodeError):
            record[key]
    if scanner == "scanner":  # members a job does not read are not validated
        assert record["a"] == 1 and list(record) == ["a", "b", "c"]


def test_bytes_work_like_text(scanner):
    text = TEXTS["non-ASCII"]
    assert LazyRecord(text.encode()) == orjson.loads(text)
    assert LazyRecord(text.encode()).get_path("名前", "値") == "日本"


# The example jobs as they were before they read lazily: every record parsed whole.
FULL_PARSE = {
    "osdistribution.py": """
from orjson import loads

def map(key, dims, value, context):
    info = loads(value).get("info") or {}
    context.write((dims[2], str(info.get("OS", "UNKNOWN"))), 1)

def combine(key, values, context):
    context.write(key, sum(values))

def reduce(key, values, context):
    context.write(key, sum(values))
""",
    "histogram_aggregate.py": """
from orjson import loads
from mapreduce.examples import histogram_aggregate as lazy

def histograms_of(record):
    if "payload" in record:
        return (record["payload"] or {}).get("histograms") or {}
    return record.get("histograms") or {}

def map(key, dims, value, context):
    histogram = histograms_of(loads(value)).get(lazy.HISTOGRAM)
    if histogram:
        context.write((dims[2], dims[3]), {"histogram": histogram, "submissions": 1, "skipped": 0})

combine, reduce = lazy.combine, lazy.reduce
""",
}

ODD_RECORDS = [
    {"info": {"OS": "Linux"}, "payload": {"histograms": {"GC_MS": [1, 0, 0, 0, 2, 3, -1, 0, 0]}}},
    {"payload": None, "histograms": {"GC_MS": [9, 9, 9, 9, 9, 9, 9, 9, 9]}},
    {"payload": {"histograms": None}},
    {"histograms": None, "info": None},
    {"info": {"OS": 95}, "histograms": {"GC_MS": []}},
    {"info": {"OS": "Darwin"}, "histograms": {"GC_MS": [1, 2, 3, 4, 5, 6, 7, 8, 9]}},
    {"info": {"OS": "WINNT"}, "histograms": {"GC_MS": [0] * 20}, "ver": "ünïcode"},
]


def test_examples_write_what_their_full_parse_versions_wrote(tmp_path):
    root = tmp_path / "published"
    store = open_store(f"file://{root}")
    synthetic.small_dataset(store, partitions=6, records=20)
    dims = synthetic.partition_dims(0)
    odd = [(f"odd{i}", json.dumps(body)) for i, body in enumerate(ODD_RECORDS)]
    synthetic.write_partition(store, dims, "odd", odd)
    for name, source in FULL_PARSE.items():
        before = tmp_path / f"before_{name}"
        before.write_text(source)
        outputs = []
        for script in (before, EXAMPLES / name):
            out = tmp_path / f"{script.stem}.out"
            done = subprocess.run(
                [sys.executable, "-m", "mapreduce.job", str(script), "-b", f"file://{root}"]
                + ["-w", str(tmp_path / "work"), "-o", str(out), "-m", "2", "-r", "2"],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            outputs.append(out.read_text())
        assert outputs[0], f"{name} wrote nothing: the comparison would prove nothing"
        assert outputs[1] == outputs[0], name
