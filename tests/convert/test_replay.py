"""`python -m convert replay`: error records run through conversion again after a fix.

Real stores, queue and database on a temporary data dir; the Mercurial server is a real HTTP
stand-in answering 404, so the idle-daily payload first fails with `missing_revision`.
"""

from __future__ import annotations

import collections
import gzip
import json
import shutil
import uuid

from convert import outcomes as oc
from convert.worker import ConvertWorker, WorkerOptions
from pipeline.config import load_settings
from pipeline.stores import open_store
from tests.support.convert import (
    IDLE_DAILY_REVISION_PATH,
    error_entries,
    make_batch,
    read_all,
    run_convert,
)

DAY = "2023-11-14"  # RECEIVED_MS


def published_ids(store) -> collections.Counter:
    return collections.Counter(
        line.split(b"\t", 1)[0].decode()
        for key, lines in read_all(store).items()
        if not key.startswith("errors/")
        for line in lines
    )


def test_replay_publishes_what_converts_now_and_is_idempotent(
    data_dir, tmp_path, shared_fixtures, hg, monkeypatch
):
    cache = tmp_path / "cache"
    env = {"TELEMETRY_HISTOGRAM_CACHE": str(cache), "TELEMETRY_HG_BASE_URL": hg.url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    idle_body = (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
    idle_path = (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.path").read_text().strip()
    ping, other, idle_id = str(uuid.uuid4()), str(uuid.uuid4()), idle_path.split("/")[3]
    records = [
        (f"/submit/myns/ping/1/{ping}", {}, b'{"a": 1}'),
        (f"/submit/myns/other/1/{other}", {}, gzip.compress(b'{"b": 2}')),
        (idle_path, {"Content-Encoding": "gzip"}, idle_body),
    ]
    worker = ConvertWorker(load_settings(), WorkerOptions(drain=True))
    worker.incoming.put("b/one.tpr", make_batch(records))
    worker.queue.send(json.dumps({"key": "b/one.tpr", "records": 3, "bytes": 0}))
    assert worker.run() == 0
    published = open_store(load_settings().published_url)
    reasons = collections.Counter(e["reason"] for e in error_entries(published))
    assert reasons == {oc.UNKNOWN_NAMESPACE: 2, oc.MISSING_REVISION: 1}

    # The operator allows myns/ping and replays: it is published, myns/other stays an error.
    allow = dict(env, TELEMETRY_ALLOWED_DOC_TYPES="myns/ping")
    result = run_convert(allow, "replay", "--reason", oc.UNKNOWN_NAMESPACE, "--since", DAY)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replayed 2 records of errors/unknown_namespace from 1 objects: published 1" in (
        result.stdout
    )
    assert "errors/unknown_namespace" in result.stderr  # the progress bar
    assert published_ids(published) == {ping: 1}
    still = [e for e in error_entries(published) if e["reason"] == oc.UNKNOWN_NAMESPACE]
    assert [e["docId"] for e in still] == [other]
    assert not published.exists(f"errors/{oc.UNKNOWN_NAMESPACE}/20231114/b_one.lz4")

    # Again: nothing new is published, the remaining error stays exactly once.
    again = run_convert(allow, "replay", "--reason", oc.UNKNOWN_NAMESPACE)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "published 0" in again.stdout
    assert published_ids(published) == {ping: 1}
    still = [e for e in error_entries(published) if e["reason"] == oc.UNKNOWN_NAMESPACE]
    assert [e["docId"] for e in still] == [other]

    # A revision mirror is added: outside the date range nothing happens, inside it publishes.
    target = cache / IDLE_DAILY_REVISION_PATH
    target.mkdir(parents=True)
    shutil.copy(
        shared_fixtures / "histograms" / IDLE_DAILY_REVISION_PATH / "Histograms.json", target
    )
    early = run_convert(env, "replay", "--reason", oc.MISSING_REVISION, "--until", "2023-11-13")
    assert early.returncode == 0 and "replayed 0 records" in early.stdout
    result = run_convert(env, "replay", "--reason", oc.MISSING_REVISION, "--since", "20231114")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "published 1" in result.stdout
    assert published_ids(published) == {ping: 1, idle_id: 1}
    assert not list(published.list(f"errors/{oc.MISSING_REVISION}/"))
    idle_keys = [k for k in read_all(published) if k.startswith("idle_daily/")]
    assert len(idle_keys) == 1 and ".v2.log.replay_missing_revision_20231114_" in idle_keys[0]


def test_replay_help_and_bad_dates(data_dir):
    result = run_convert({}, "replay", "--help")
    assert result.returncode == 0 and "--reason" in result.stdout and "--since" in result.stdout
    bad = run_convert({}, "replay", "--reason", "bad_json", "--since", "yesterday")
    assert bad.returncode == 2 and "not a date" in bad.stderr
    typo = run_convert({}, "replay", "--reason", "bad-json")
    assert typo.returncode == 2 and "invalid choice" in typo.stderr
