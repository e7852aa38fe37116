"""Byte for byte: the real payloads convert to exactly the output kept in a fixture.

The fixture (`tests/convert/data/convert_golden.json.gz`) was written by this test from the real
payloads of the shared fixtures (the `shared_fixtures` fixture) with the code of the time, before convert's hot path was made
faster (issue 19); a faster path must give the same lines, partitions and outcomes. Write it
again only on purpose, after a deliberate change of the output:

    TELEMETRY_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/convert/test_golden.py

Cases: the idle-daily v1 submission and the ESR 153 `main` ping, with and without a country,
a copy with invalid and unknown histograms, one with a duplicated top-level histograms key,
a pretty-printed one, and the idle-daily payload whose revision is unavailable (published
unvalidated with its declared layouts).
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import json
import os
import uuid
from pathlib import Path

import orjson
import pytest

from convert.histogram_tools import real_tools
from convert.record import RecordConverter
from histograms.convert import IMPLEMENTATION
from pipeline.client_address import COUNTRY_HEADER
from pipeline.config import load_settings
from pipeline.layout import Schema
from pipeline.records import Record
from tests.support.convert import RECEIVED_MS, seed_histogram_cache

GOLDEN = Path(__file__).parent / "data" / "convert_golden.json.gz"
REGENERATE = os.environ.get("TELEMETRY_REGENERATE_GOLDEN") == "1"
OBJECT_ID = "golden_batch"
ESR_PATH = "/submit/telemetry/{}/main/Firefox/153.7.0/esr/20261103151912?v=4"
GZIP = {"Content-Encoding": "gzip"}


def _doc_id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def _mutated(idle: dict) -> dict:
    """Invalid and unknown histograms of every kind the converter reports, plus odd numbers."""
    payload = copy.deepcopy(idle)
    hists = payload["histograms"]
    names = sorted(hists)
    hists[names[0]]["bucket_count"] = 999
    hists[names[1]]["values"]["123456789"] = 1
    hists[names[2]]["values"][next(iter(hists[names[2]]["values"]))] = -3
    hists[names[3]]["sum"] = "many"
    hists[names[4]]["range"] = [1]
    hists[names[5]]["histogram_type"] = 77
    hists[names[6]]["sum"] = 1e300
    hists[names[7]]["log_sum"] = 0.1 + 0.2
    hists[names[8]]["log_sum_squares"] = None
    hists[names[9]] = "not an object"
    hists["NOT_A_REAL_HISTOGRAM"] = {"values": {"0": 1}}
    hists["STARTUP_" + names[10]] = copy.deepcopy(hists[names[10]])
    return payload


def cases(fixtures: Path) -> list[tuple[str, str, dict, bytes]]:
    """(name, path, headers, body) of every record the fixture keeps the output of."""
    idle_gz = (fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
    idle_raw = gzip.decompress(idle_gz)
    idle_path = (fixtures / "payloads/idle-daily-firefox-23.0.1.path").read_text().strip()
    idle = orjson.loads(idle_raw)
    esr_raw = (fixtures / "firefox/main-ping-esr153.json").read_bytes()
    dup = idle_raw[:-1] + b',"histograms":' + orjson.dumps(idle["histograms"]) + b"}"
    odd = _mutated(idle)
    names = sorted(odd["histograms"])
    odd["histograms"][names[11]]["log_sum"] = 12345.678
    odd["histograms"][names[12]]["log_sum"] = 777777.5
    odd["histograms"][names[13]]["sum"] = 2**70
    odd_text = (
        orjson.dumps({k: v for k, v in odd.items() if k != "histograms"})[:-1]
        + b',"histograms":'
        + json.dumps(odd["histograms"], separators=(",", ":")).encode()
        + b"}"
    )
    odd_text = odd_text.replace(b"12345.678", b"12345.67800").replace(b"777777.5", b"7.777775e5")
    escaped = idle_raw.replace(b'"A11Y_IATABLE_USAGE_FLAG"', b'"A11Y_IATABLE_\\u0055SAGE_FLAG"')
    broken = idle_raw.replace(b'"values":{', b'"values":{,', 1)
    no_revision = dict(idle, info=dict(idle["info"], revision=""))
    return [
        ("idle_daily", idle_path, dict(GZIP, **{COUNTRY_HEADER: "DE"}), idle_gz),
        ("idle_daily_no_country", idle_path, GZIP, idle_gz),
        ("idle_daily_plain", idle_path, {COUNTRY_HEADER: "??"}, idle_raw),
        ("idle_daily_pretty", idle_path, {}, json.dumps(idle, indent=2).encode()),
        ("idle_daily_mutated", idle_path, {}, orjson.dumps(_mutated(idle))),
        ("idle_daily_duplicate_key", idle_path, {}, dup),
        ("idle_daily_odd_numbers", idle_path, {}, odd_text),
        ("idle_daily_escaped_name", idle_path, {}, escaped),
        ("idle_daily_broken_section", idle_path, {}, broken),
        ("idle_daily_no_revision", idle_path, {}, orjson.dumps(no_revision)),
        ("esr_main", ESR_PATH.format(_doc_id("esr")), {COUNTRY_HEADER: "FR"}, esr_raw),
        ("esr_main_gzip", ESR_PATH.format(_doc_id("esr2")), GZIP, gzip.compress(esr_raw)),
    ]


def _outcome_dict(outcome) -> dict:
    found = dataclasses.asdict(outcome)
    found["line"] = outcome.line.decode("utf-8")
    return found


def convert_all(fixtures: Path, tmp_path: Path, monkeypatch) -> dict[str, dict]:
    """Every case's outcome, converted by the production converter (validated), plus the
    idle-daily payload once more with its revision unavailable (declared layouts)."""
    cache = seed_histogram_cache(fixtures, tmp_path / "cache")
    monkeypatch.setenv("TELEMETRY_HISTOGRAM_CACHE", str(cache))
    monkeypatch.setenv("TELEMETRY_HG_BASE_URL", "http://127.0.0.1:9")
    tools = real_tools(load_settings())
    split_used = []
    real_convert_split = tools.convert_split

    def convert_split(*args):
        result = real_convert_split(*args)
        split_used.append(result is not None)
        return result

    tools = dataclasses.replace(tools, convert_split=convert_split)
    converter = RecordConverter(tools, Schema.load(), 1 << 24)
    results = {}
    for name, path, headers, body in cases(fixtures):
        record = Record(RECEIVED_MS, path, headers, body)
        del split_used[:]
        results[name] = _outcome_dict(converter.convert(record, OBJECT_ID))
        results[name]["split_used"] = any(split_used)
    monkeypatch.setenv("TELEMETRY_HISTOGRAM_CACHE", str(tmp_path / "empty-cache"))
    offline = RecordConverter(real_tools(load_settings()), Schema.load(), 1 << 24)
    name, path, headers, body = cases(fixtures)[0]
    record = Record(RECEIVED_MS, path, headers, body)
    results["idle_daily_unvalidated"] = _outcome_dict(offline.convert(record, OBJECT_ID))
    return results


def test_real_payloads_convert_byte_for_byte_as_the_kept_fixture(
    data_dir, tmp_path, shared_fixtures, monkeypatch
):
    results = convert_all(shared_fixtures, tmp_path, monkeypatch)
    assert results["idle_daily"]["kind"] == "published"
    assert results["idle_daily_unvalidated"]["unvalidated"]
    split_used = {name: found.pop("split_used", False) for name, found in results.items()}
    if IMPLEMENTATION == "cython":  # the fast path is what this test holds to the old output
        assert split_used["idle_daily"] and split_used["idle_daily_mutated"]
    if REGENERATE:
        GOLDEN.parent.mkdir(exist_ok=True)
        text = json.dumps(results, indent=1, sort_keys=True, ensure_ascii=False)
        GOLDEN.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN} is missing: TELEMETRY_REGENERATE_GOLDEN=1 writes it")
    kept = json.loads(gzip.decompress(GOLDEN.read_bytes()))
    assert sorted(results) == sorted(kept)
    for name, found in results.items():
        expected = kept[name]
        assert found["line"].encode("utf-8") == expected["line"].encode("utf-8"), name
        assert found == expected, name
