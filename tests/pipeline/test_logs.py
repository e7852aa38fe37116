"""Structured logs: every service's lines parse as JSON with TELEMETRY_LOG_FORMAT=json, and
record ids (docId, batch key, run id) are fields of their lines."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from pipeline.logs import log_context, make_formatter, setup_logging
from pipeline.queues import open_work_queue
from pipeline.stores import open_store
from tests.support.convert import make_batch
from tests.support.scheduler import add_example
from tests.support.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def json_lines(stderr: str) -> list[dict]:
    """Every line of `stderr` parsed as one JSON object (fails on any line that is not)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "no log lines"
    return [json.loads(line) for line in lines]


def run(module: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TELEMETRY_LOG_FORMAT": "json", **env},
    )


def test_convert_logs_json_lines_with_the_batch_key(settings):
    key = "20240101/000000-host-1-logs.batch"
    open_store(settings.incoming_url).put(key, make_batch([("/bad", {}, b"x")]))
    queue = open_work_queue(settings)
    queue.send(json.dumps({"key": key, "records": 1, "bytes": 1}))
    queue.close()
    result = run("convert", "--drain", "--drain-wait", "0")
    assert result.returncode == 0, result.stderr
    entries = json_lines(result.stderr)
    assert {entry["service"] for entry in entries} == {"convert"}
    assert all({"time", "level", "logger", "message", "pid"} <= set(entry) for entry in entries)
    stats = [e for e in entries if e["message"].startswith("convert stats")]
    assert [(e["batch"], e["message_id"]) for e in stats] == [(key, "1")]


def test_scheduler_logs_json_lines_with_the_run_id(example_tarball):
    assert add_example(example_tarball).returncode == 0
    result = run("scheduler", "run-now", "published-summary", "--wait", "--log-level", "INFO")
    assert result.returncode == 0, result.stdout + result.stderr
    ended = [e for e in json_lines(result.stderr) if "ended" in e["message"]]
    assert [(e["run"], e["job"], e["service"]) for e in ended] == [
        (1, "published-summary", "scheduler")
    ]


def test_ingest_access_log_is_a_json_object_with_the_doc_id(data_dir):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest", "--port", str(port), "--no-hourly-counts"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TELEMETRY_LOG_FORMAT": "json"},
    )
    doc_id = str(uuid.uuid4())
    try:
        wait_for_port(port, timeout=60)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/submit/telemetry/{doc_id}", data=b"{}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    finally:
        process.terminate()
        _out, stderr = process.communicate(timeout=60)
    access = [e for e in json_lines(stderr) if e["logger"] == "ingest.access"]
    assert [(e["docId"], e["status"], e["method"], e["namespace"]) for e in access] == [
        (doc_id, 200, "POST", "telemetry")
    ]


@pytest.mark.parametrize("module", ["ingest", "convert", "scheduler", "health", "dashboard"])
def test_every_service_takes_the_same_log_level_flag(module, data_dir):
    result = run(module, "--help")
    assert result.returncode == 0
    assert "--log-level LEVEL" in result.stdout and "-v, --verbose" in result.stdout


def test_a_bad_log_format_is_one_line_naming_the_setting(data_dir):
    result = run("convert", "--drain", TELEMETRY_LOG_FORMAT="xml")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: TELEMETRY_LOG_FORMAT: must be text or json, got 'xml'"
    ]


def test_text_lines_carry_the_fields_as_key_value(capsys):
    setup_logging("test", "DEBUG")
    try:
        with log_context(batch="b/one.batch"):
            logging.getLogger("t").info("converted", extra={"docId": "abc"})
        line = capsys.readouterr().err.strip()
        assert line.endswith(f"INFO test[{os.getpid()}] t: converted docId=abc batch=b/one.batch")
    finally:
        setup_logging("test", "WARNING")


def test_buffered_lines_keep_their_order_and_are_all_written(capsys):
    """The buffered handler (ingest's) holds INFO lines back, writes them before a warning
    and writes the rest when it is replaced or closed (as at exit)."""
    setup_logging("test", "INFO", buffered=True)
    log = logging.getLogger("t")
    try:
        log.info("first", extra={"docId": "a"})
        log.info("second")
        log.warning("third")
        assert [line.split(": ", 1)[1] for line in capsys.readouterr().err.splitlines()] == [
            "first docId=a",
            "second",
            "third",
        ]
        log.info("fourth")
    finally:
        setup_logging("test", "WARNING")  # replaces and closes the buffered handler
    assert capsys.readouterr().err.strip().endswith("t: fourth")


def test_json_lines_keep_the_traceback_in_one_object():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, "f", 1, "failed %s", ("x",), sys.exc_info())
    entry = json.loads(make_formatter("json").format(record))
    assert entry["message"] == "failed x" and "ValueError: boom" in entry["exc_info"]


def test_dashboard_and_gunicorn_lines_are_json_too(data_dir):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TELEMETRY_LOG_FORMAT": "json"},
    )
    try:
        wait_for_port(port, timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as response:
            assert response.status == 200
    finally:
        process.terminate()
        _out, stderr = process.communicate(timeout=60)
    entries = json_lines(stderr)
    assert {e["service"] for e in entries} == {"dashboard"}
    assert any(e["logger"] == "gunicorn.error" for e in entries)
