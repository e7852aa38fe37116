"""Hostile fan-out: one batch naming thousands of partitions converts with few open files.

The worker runs as `python -m convert --drain` in a subprocess whose RLIMIT_NOFILE is far
below the number of partitions the batch names; on the old code it died with EMFILE and the
batch (with the real Firefox records in it) was dead-lettered.
"""

from __future__ import annotations

import gzip
import json
import resource
import uuid

import lz4.frame

from convert import outcomes as oc
from convert.writers import PartitionWriters
from pipeline.allow_list import AllowList
from pipeline.config import load_settings
from pipeline.db import make_engine
from pipeline.queues import open_work_queue
from pipeline.stats import read_counts
from pipeline.stores import open_store
from tests.support.convert import (
    RECEIVED_MS,
    error_entries,
    make_batch,
    run_convert,
    seed_histogram_cache,
)

SPAM = 1500
NOFILE = 160
BUILDS = 100  # telemetry partitions: more than the 64 writers a batch keeps open


def _limit_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def real_records(shared_fixtures):
    idle_body = (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
    idle_path = (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.path").read_text().strip()
    esr = (shared_fixtures / "firefox/main-ping-esr153.json").read_bytes()
    esr_id = str(uuid.uuid4())
    esr_path = f"/submit/telemetry/{esr_id}/main/Firefox/153.7.0/esr/20261103151912?v=4"
    gzip_header = {"Content-Encoding": "gzip"}
    return [
        (idle_path, gzip_header, idle_body),
        (esr_path, gzip_header, gzip.compress(esr)),
        (f"/submit/firefox-desktop/baseline/1/{uuid.uuid4()}", {}, b'{"ping_info": {}}'),
    ]


def spam_records():
    """Half made-up namespaces/doc types, half telemetry pings with made-up build ids taken in
    turn: both used to become one partition (and one open file) each."""
    records = []
    for i in range(SPAM):
        if i % 2:
            records.append((f"/submit/ns/dt{i}/1/{uuid.uuid4()}", {}, b"{}"))
        else:
            build = (i // 2) % BUILDS  # round robin: every write finds its file closed
            path = f"/submit/telemetry/{uuid.uuid4()}/main/Firefox/153.0/release/{build:014d}"
            records.append((path, {}, b'{"payload": {}}'))
    return records


def test_fan_out_batch_under_a_low_open_file_limit_publishes_the_real_records(
    data_dir, tmp_path, shared_fixtures, monkeypatch
):
    cache = seed_histogram_cache(shared_fixtures, tmp_path / "cache")
    env = {"TELEMETRY_HISTOGRAM_CACHE": str(cache), "TELEMETRY_HG_BASE_URL": "http://127.0.0.1:9"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    spam = spam_records()
    records = spam[: SPAM // 2] + real_records(shared_fixtures) + spam[SPAM // 2 :]
    incoming = open_store(settings.incoming_url)
    incoming.put("fan/out.tpr", make_batch(records))
    queue = open_work_queue(settings)
    queue.send(json.dumps({"key": "fan/out.tpr", "records": len(records), "bytes": 0}))
    queue.close()

    result = run_convert(env, "--drain", preexec_fn=_limit_open_files)
    assert result.returncode == 0, result.stderr[-3000:]

    published = open_store(settings.published_url)
    keys = [info.key for info in published.list()]
    main = [k for k in keys if k.startswith("main/Firefox/esr/153.7.0/20261103151912.")]
    idle = [k for k in keys if k.startswith("idle_daily/Firefox/release/23.0.1/")]
    glean = [k for k in keys if k.startswith("namespaces/firefox_desktop/baseline/1/")]
    assert len(main) == len(idle) == len(glean) == 1, keys[:20]
    doc = json.loads(lz4.frame.decompress(published.get(main[0])).split(b"\t", 1)[1])
    assert all(isinstance(v, list) for v in doc["payload"]["histograms"].values())
    # every made-up telemetry build id published (a partition each); made-up namespaces kept
    # with their raw records in errors/unknown_namespace, in one object
    builds = [k for k in keys if k.startswith("main/Firefox/release/153.0/")]
    assert len(builds) == BUILDS  # one object per partition, however the records interleave
    lines = [lz4.frame.decompress(published.get(k)).count(b"\n") for k in builds]
    assert sum(lines) == SPAM // 2
    unknown = [k for k in keys if k.startswith(f"errors/{oc.UNKNOWN_NAMESPACE}/")]
    assert len(unknown) == 1
    entries = [e for e in error_entries(published) if e["reason"] == oc.UNKNOWN_NAMESPACE]
    assert len(entries) == SPAM // 2 and all(e["body"] == "e30=" for e in entries)  # b"{}"
    assert not incoming.exists("fan/out.tpr")
    # stats: bounded labels, not one row per made-up doc type
    rows = read_counts(make_engine(settings.database_url), since=_hour_before(RECEIVED_MS))
    assert len(rows) < 20, rows


def _hour_before(ms: int):
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000 - 3600, dt.UTC)


def test_writers_keep_few_files_open_and_still_make_one_object_per_partition(tmp_path):
    with PartitionWriters(str(tmp_path), max_open=2) as writers:
        for key in ("a.lz4", "b.lz4", "c.lz4", "a.lz4", "a.lz4", "b.lz4"):
            writers.write(key, key.encode() + b"\n")
            assert writers.open_files <= 2
        finished = writers.finish()
        objects = {obj.key: (obj.lines, open(obj.path, "rb").read()) for obj in finished}
    # one lz4 frame each (what lz4.frame.decompress and every reader expect), all lines in it
    assert {key: (lines, lz4.frame.decompress(data)) for key, (lines, data) in objects.items()} == {
        "a.lz4": (3, b"a.lz4\na.lz4\na.lz4\n"),
        "b.lz4": (2, b"b.lz4\nb.lz4\n"),
        "c.lz4": (1, b"c.lz4\n"),
    }


def test_allow_list_takes_operator_additions_and_folds_unlisted_stats_labels():
    allow = AllowList.parse("myns/ping, other/*")
    assert allow.allows("firefox-desktop", "metrics") and allow.allows("telemetry", "anything")
    assert allow.allows("myns", "ping") and not allow.allows("myns", "pong")
    assert allow.allows("other", "x") and allow.stats_label("other", "x") == "OTHER"
    assert allow.stats_label("myns", "ping") == "ping"
    assert not AllowList.parse().allows("ns", "dt1")


def test_a_malformed_allow_list_is_a_configuration_error(data_dir):
    result = run_convert({"TELEMETRY_ALLOWED_DOC_TYPES": "no-slash"}, "--drain")
    assert result.returncode == 2
    assert "TELEMETRY_ALLOWED_DOC_TYPES" in result.stderr
