"""Definitions out of reach do not hold data back: a real Firefox ESR 153 `main` ping whose
revision's Histograms.json cannot be fetched is published at once, its histograms converted
with the layouts it declares and marked, then re-validated once the Histograms.json is there.

On the old code the ping was parked with no reason in the log and retried for ~37 hours.
"""

from __future__ import annotations

import collections
import gzip
import json
import shutil
import uuid

import lz4.frame
from sqlalchemy import select

from convert.worker import EXIT_WORK_LEFT
from histograms.declared import definitions_from_payload
from pipeline.config import load_settings
from pipeline.db import make_engine
from pipeline.queues import open_work_queue
from pipeline.stats import HourlyStat
from pipeline.stores import open_store
from tests.support.convert import ESR_REVISION_PATH, make_batch, run_convert

MAIN_PREFIX = "main/Firefox/esr/153.7.0/20261103151912."


def _documents(store) -> dict[str, list[tuple[str, dict]]]:
    """Published (not errors/) objects -> [(docId, document)]."""
    out = {}
    for info in store.list():
        if info.key.startswith("errors/"):
            continue
        lines = lz4.frame.decompress(store.get(info.key)).splitlines()
        out[info.key] = [
            (doc_id.decode(), json.loads(doc))
            for doc_id, doc in (ln.split(b"\t", 1) for ln in lines)
        ]
    return out


def _histograms(doc: dict) -> dict:
    """Every plain histogram of a v4 ping, process ones as `<process>/<name>`."""
    inner = doc["payload"]
    found = dict(inner.get("histograms", {}))
    for process, section in inner.get("processes", {}).items():
        for name, hist in section.get("histograms", {}).items():
            found[f"{process}/{name}"] = hist
    return found


def _stats(settings) -> collections.Counter:
    with make_engine(settings.database_url).connect() as conn:
        rows = conn.execute(select(HourlyStat.source, HourlyStat.outcome, HourlyStat.count)).all()
    counts = collections.Counter()
    for source, outcome, count in rows:
        counts[(source, outcome)] += count
    return counts


def test_esr_ping_offline_is_published_unvalidated_then_revalidated(
    data_dir, tmp_path, shared_fixtures, monkeypatch
):
    cache = tmp_path / "cache"
    env = {"TELEMETRY_HISTOGRAM_CACHE": str(cache), "TELEMETRY_HG_BASE_URL": "http://127.0.0.1:9"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    ping = json.loads((shared_fixtures / "firefox/main-ping-esr153.json").read_text())
    doc_id = str(uuid.uuid4())
    path = f"/submit/telemetry/{doc_id}/main/Firefox/153.7.0/esr/20261103151912?v=4"
    body = gzip.compress(json.dumps(ping).encode())
    incoming = open_store(settings.incoming_url)
    incoming.put("b/one.tpr", make_batch([(path, {"Content-Encoding": "gzip"}, body)]))
    queue = open_work_queue(settings)
    queue.send(json.dumps({"key": "b/one.tpr", "records": 1, "bytes": 0}))
    queue.close()

    # Offline: published at once, unvalidated; its re-validation waits in the queue.
    first = run_convert(env, "--drain", "--drain-wait", "0", "--park-delay", "1")
    assert first.returncode == EXIT_WORK_LEFT, first.stderr[-3000:]
    assert "published 1 records unvalidated" in first.stderr
    assert "revision_unavailable" in first.stderr and "mozilla-esr153" in first.stderr
    published = open_store(settings.published_url)
    documents = _documents(published)
    [key] = [k for k in documents if k.startswith(MAIN_PREFIX)]
    assert key.endswith(".v2.log.unvalidated_b_one.lz4")
    [(found_id, unvalidated)] = documents[key]
    assert found_id == doc_id
    marker = unvalidated["histogramDefinitions"]
    assert marker["source"] == "payload" and marker["reason"] == "revision_unavailable"
    assert ESR_REVISION_PATH.split("/")[-1] in marker["revision"]
    declared = _histograms(unvalidated)
    assert len(declared) >= 0.9 * len(_histograms(ping))
    assert all(isinstance(v, list) for v in declared.values())
    assert [i.key for i in incoming.list()] == ["unvalidated/b_one.tpr"]
    assert _stats(settings)[("convert_hist", "unvalidated_revision_unavailable")] == 1
    assert _stats(settings)[("convert", "published")] == 1

    # The Histograms.json becomes available: the same object now holds the validated record.
    target = cache / ESR_REVISION_PATH
    target.mkdir(parents=True)
    shutil.copy(shared_fixtures / "histograms/enterprise-firefox-72a855fe/Histograms.json", target)
    second = run_convert(env, "--drain", "--drain-wait", "60", "--park-delay", "1")
    assert second.returncode == 0, second.stderr[-3000:]
    documents = _documents(published)
    assert [k for k in documents if k.startswith(MAIN_PREFIX)] == [key]
    [(found_id, validated)] = documents[key]
    assert found_id == doc_id and "histogramDefinitions" not in validated
    assert sum(doc == doc_id for docs in documents.values() for doc, _ in docs) == 1
    validated_histograms = _histograms(validated)
    checked = [name for name in validated_histograms if name in declared]
    assert len(checked) >= 10  # those this Histograms.json (a stand-in for the ESR one) defines
    for name in checked:  # the layouts Firefox declared are the ones its Histograms.json makes
        assert validated_histograms[name] == declared[name], name
    assert not list(incoming.list())
    assert _stats(settings)[("convert_hist", "revalidated")] == 1
    assert _stats(settings)[("convert", "published")] == 1  # counted once, when first published


def test_declared_definitions_refuse_layouts_firefox_cannot_make():
    payload = {
        "ver": 1,
        "histograms": {
            "GOOD": {"histogram_type": 0, "range": [1, 1000], "bucket_count": 20, "values": {}},
            "HUGE": {"histogram_type": 1, "range": [1, 10**9], "bucket_count": 10**7},
            "NO_TYPE": {"range": [1, 2], "bucket_count": 3},
            "BAD_FLAG": {"histogram_type": 3, "range": [1, 5], "bucket_count": 7},
        },
    }
    definitions = definitions_from_payload(payload)
    assert list(definitions) == ["GOOD"]
    assert {name for name, _ in definitions.errors} == {"HUGE", "NO_TYPE", "BAD_FLAG"}


def test_redone_batch_and_stash_publish_every_record_exactly_once(
    data_dir, tmp_path, shared_fixtures, monkeypatch
):
    """A crash before the ack redoes a batch, then its stash: same objects, no second copy."""
    from convert.batch import BatchMessage
    from convert.worker import ConvertWorker, WorkerOptions
    from tests.support.convert import seed_histogram_cache

    cache = seed_histogram_cache(shared_fixtures, tmp_path / "cache")
    esr_dir = cache / ESR_REVISION_PATH
    shutil.move(esr_dir, tmp_path / "esr-later")  # only the idle-daily revision to begin with
    monkeypatch.setenv("TELEMETRY_HISTOGRAM_CACHE", str(cache))
    monkeypatch.setenv("TELEMETRY_HG_BASE_URL", "http://127.0.0.1:9")
    ping = (shared_fixtures / "firefox/main-ping-esr153.json").read_bytes()
    idle_body = (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
    idle_path = (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.path").read_text().strip()
    esr_id = str(uuid.uuid4())
    esr_path = f"/submit/telemetry/{esr_id}/main/Firefox/153.7.0/esr/20261103151912"
    gzh = {"Content-Encoding": "gzip"}
    batch = make_batch([(idle_path, gzh, idle_body), (esr_path, gzh, gzip.compress(ping))])
    worker = ConvertWorker(load_settings(), WorkerOptions(drain=True))
    worker.incoming.put("b/one.tpr", batch)
    first = worker.processor.process(BatchMessage("b/one.tpr"))
    snapshot, stash = _documents(worker.published), worker.incoming.get("unvalidated/b_one.tpr")
    again = worker.processor.process(BatchMessage("b/one.tpr"))  # the redo after a crash
    assert _documents(worker.published) == snapshot
    assert worker.incoming.get("unvalidated/b_one.tpr") == stash
    assert first.unvalidated == again.unvalidated == {"revision_unavailable": 1}
    assert sorted(k.rsplit(".", 2)[-2] for k in snapshot) == ["b_one", "unvalidated_b_one"]
    worker.close()

    shutil.move(tmp_path / "esr-later", esr_dir)  # the revision becomes available
    later = ConvertWorker(load_settings(), WorkerOptions(drain=True))
    for _ in range(2):  # processed, then redone
        report = later.processor.process(BatchMessage("unvalidated/b_one.tpr", park_attempt=1))
        assert not report.keep_incoming and not report.unvalidated
        documents = _documents(later.published)
        ids = collections.Counter(doc for docs in documents.values() for doc, _ in docs)
        assert ids == {esr_id: 1, idle_path.split("/")[3]: 1}
        assert not any("histogramDefinitions" in d for docs in documents.values() for _, d in docs)
    later.close()
