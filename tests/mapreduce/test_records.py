"""Looking at records: `mapreduce.read`, `python -m mapreduce.cat`, filters over namespaces/ and
errors/, and `--output-format jsonl`, on data published by the real converter."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import lz4.frame
import pytest

import mapreduce
from mapreduce import synthetic
from mapreduce.job import main as job_main
from pipeline.layout import InputFilter, LayoutError
from pipeline.stores import open_store
from tests.support.convert import gz, make_batch, make_worker, submit, telemetry_path, v1_payload

REPO = Path(__file__).resolve().parents[2]
GLEAN_DOC = "2dcbeda0-4b76-470a-a7b5-1902dc53b17b"
# A real `baseline` ping Firefox ESR 153 sent to /submit/firefox-desktop/baseline/1/<docId>
# during tests/convert/test_firefox.py (captured from the incoming store, gzip removed).
GLEAN_FIXTURE = (
    Path(__file__).with_name("fixtures") / "glean" / "firefox-desktop-baseline-esr153.json"
)
GLEAN_PING = json.loads(GLEAN_FIXTURE.read_bytes())


@pytest.fixture
def converted(settings):
    """One batch through the real convert worker: telemetry, a Glean ping and a bad body."""
    worker = make_worker(settings)
    records = [
        (telemetry_path("tele-1"), {"Content-Encoding": "gzip"}, gz(v1_payload())),
        (
            f"/submit/firefox-desktop/baseline/1/{GLEAN_DOC}",
            {"Content-Encoding": "gzip", "Content-Type": "application/json; charset=utf-8"},
            gz(GLEAN_FIXTURE.read_bytes()),
        ),
        (telemetry_path("broken-1"), {"Content-Encoding": "gzip"}, gz(b"{not json\tat all")),
    ]
    submit(worker, "b/one.tpr", make_batch(records))
    assert worker.run() == 0
    return settings


def cat(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mapreduce.cat", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_filter(tmp_path: Path, data: dict) -> str:
    path = tmp_path / f"filter-{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_a_namespaces_filter_reads_the_glean_ping(converted, tmp_path):
    glean = {
        "source": "namespaces",
        "dimensions": [
            {"field_name": "namespace", "allowed_values": "firefox-desktop"},
            {"field_name": "docType", "allowed_values": ["baseline"]},
        ],
    }
    found = list(mapreduce.read(glean))
    assert found == [
        (
            GLEAN_DOC,
            {
                "namespace": "firefox_desktop",  # sanitised as a path component
                "docType": "baseline",
                "docVersion": "1",
                "submission_date": found[0][1]["submission_date"],
            },
            GLEAN_PING,
        )
    ]
    # The telemetry filter (the default) does not see namespaces/ or errors/.
    assert [key for key, _, _ in mapreduce.read()] == ["tele-1"]
    # A filter excluding the namespace finds nothing.
    other = {**glean, "dimensions": [{"field_name": "namespace", "allowed_values": "glean"}]}
    assert list(mapreduce.read(other)) == []


def test_a_mapreduce_job_reads_namespaces_with_their_dimensions(converted, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "import json\n"
        "def map(key, dims, value, context):\n"
        "    info = json.loads(value)['client_info']\n"
        "    context.write(dims[0] + '/' + dims[1] + '/' + info['app_channel'], 1)\n"
        "def reduce(key, values, context):\n"
        "    context.write(key, sum(values))\n"
    )
    glean = write_filter(tmp_path, {"source": "namespaces", "dimensions": []})
    out = tmp_path / "out.txt"
    args = [str(script), "-f", glean, "-o", str(out), "-w", str(tmp_path / "w"), "-m", "1"]
    assert job_main(args) == 0
    assert out.read_text() == "firefox_desktop/baseline/esr\t1\n"


def test_cat_prints_errors_with_the_raw_body_decoded(converted):
    result = cat("--source", "errors")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["key"] == "broken-1"
    assert line["source"] == "errors"
    assert line["dimensions"]["reason"] == "bad_json"
    assert line["record"]["body_text"] == "{not json\tat all"


def test_cat_doc_id_limit_and_unknown_doc_id(converted):
    result = cat("--doc-id", "tele-1")
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(x) for x in result.stdout.splitlines()]
    assert line["dimensions"]["appVersion"] == "23.0.1"
    assert line["record"]["info"]["appName"] == "Firefox"
    missing = cat("--doc-id", "nope")
    assert missing.returncode == 1 and "no record with docId 'nope'" in missing.stderr
    assert cat("--limit", "0").stdout == ""


def test_cat_round_trips_values_with_tabs_and_newlines(settings):
    store = open_store(settings.published_url)
    body = {"text": "a\tb\nc\r\nd", "\t": "\n"}
    dims = synthetic.partition_dims(0)
    synthetic.write_partition(store, dims, "o1", [("doc-1", json.dumps(body))])
    result = cat()
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["record"] == body


def test_cat_bad_filter_is_a_one_line_error(settings, tmp_path):
    bad = write_filter(tmp_path, {"source": "elsewhere", "dimensions": []})
    result = cat("-f", bad)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "unknown source 'elsewhere'; known: telemetry, namespaces, errors"
    )
    with pytest.raises(LayoutError, match="unknown dimension 'appName'"):
        InputFilter.load({"source": "errors", "dimensions": [{"field_name": "appName"}]})


def test_jsonl_output_round_trips_keys_with_tabs_and_newlines(settings, tmp_path):
    store = open_store(settings.published_url)
    synthetic.small_dataset(store, partitions=2, records=4)
    script = tmp_path / "job.py"
    script.write_text(
        "def map(key, dims, value, context):\n"
        "    context.write('k\\tey\\n' + dims[0], {'v': 'x\\ty\\n'})\n"
        "def reduce(key, values, context):\n"
        "    context.write(key, [len(list(values)), 'a\\nb'])\n"
    )
    for mappers in ("1", "2"):
        out = tmp_path / f"out{mappers}.jsonl"
        args = [str(script), "--output-format", "jsonl", "-o", str(out), "-m", mappers]
        assert job_main([*args, "-w", str(tmp_path / f"w{mappers}")]) == 0
        pairs = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(key for key, _ in pairs) == ["k\tey\nidle_daily", "k\tey\nsaved_session"]
        assert all(value[1] == "a\nb" and value[0] > 0 for _, value in pairs)
    # A map-only job writes its output from the mappers: the same format applies.
    map_only = tmp_path / "maponly.py"
    map_only.write_text(
        "def map(key, dims, value, context):\n    context.write('a\\tb', 'c\\nd')\n"
    )
    out = tmp_path / "maponly.jsonl"
    args = [str(map_only), "--output-format", "jsonl", "-o", str(out), "-w", str(tmp_path / "w")]
    assert job_main(args) == 0
    assert {tuple(json.loads(line)) for line in out.read_text().splitlines()} == {("a\tb", "c\nd")}


def test_error_keys_with_tabs_and_newlines_round_trip_through_cat_and_jsonl(settings, tmp_path):
    """An errors/ record's key is its docId, which can be any text: cat and jsonl keep it whole."""
    store = open_store(settings.published_url)
    odd = "doc\tid\nwith\r\nbreaks"
    entry = {"reason": "bad_json", "docId": odd, "batch": "b", "offset": 0, "body": "e30="}
    store.put("errors/bad_json/20261206/o1.lz4", lz4.frame.compress(json.dumps(entry).encode()))
    result = cat("--source", "errors")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["key"] == odd
    assert json.loads(line)["record"]["body_text"] == "{}"
    script = tmp_path / "keys.py"
    script.write_text(
        "def map(key, dims, value, context):\n    context.write(key, dims)\n"
        "def reduce(key, values, context):\n    context.write(key, list(values))\n"
    )
    errors = write_filter(tmp_path, {"source": "errors", "dimensions": []})
    out = tmp_path / "out.jsonl"
    args = [str(script), "-f", errors, "--output-format", "jsonl", "-o", str(out)]
    assert job_main([*args, "-w", str(tmp_path / "w")]) == 0
    assert [json.loads(x) for x in out.read_text().splitlines()] == [
        [odd, [["bad_json", "20261206"]]]
    ]


def test_big_integers_and_odd_text_are_read_exactly(settings):
    store = open_store(settings.published_url)
    body = '{"big": 123456789012345678901234567890, "neg": -9223372036854775809, "s": "\\u2028"}'
    synthetic.write_partition(store, synthetic.partition_dims(1), "o1", [("d", body)])
    [(_key, _dims, record)] = mapreduce.read()
    assert record == json.loads(body)
    assert json.loads(cat().stdout)["record"] == json.loads(body)
