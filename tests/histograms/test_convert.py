"""Validate + convert: real payloads convert cleanly; every kind of bad histogram is reported."""

from __future__ import annotations

import copy
import gzip
import json
import subprocess
import sys

import pytest

from histograms import _slow, convert
from histograms.convert import ConversionResult, convert_payload, revision_of
from histograms.definitions import load_definitions

OLD = "histograms/releases/mozilla-release/a55c55edf302/Histograms.json"
MODERN = "histograms/enterprise-firefox-72a855fe/Histograms.json"
IMPLEMENTATIONS = [pytest.param(_slow, id="python")]
if convert.IMPLEMENTATION == "cython":
    from histograms import _fast

    IMPLEMENTATIONS.append(pytest.param(_fast, id="cython"))


@pytest.fixture(scope="module")
def idle_daily(shared_fixtures) -> dict:
    return json.loads(
        gzip.decompress(
            (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
        )
    )


@pytest.fixture(scope="module")
def old_definitions(shared_fixtures):
    return load_definitions(shared_fixtures / OLD)


@pytest.fixture(scope="module")
def esr_ping(shared_fixtures) -> dict:
    return json.loads((shared_fixtures / "firefox/main-ping-esr153.json").read_text())


@pytest.fixture(scope="module")
def modern_definitions(shared_fixtures):
    return load_definitions(shared_fixtures / MODERN)


def small_definitions():
    return load_definitions(
        json.dumps(
            {
                "EXP": {"kind": "exponential", "high": 100, "n_buckets": 5},
                "FLAG": {"kind": "flag"},
                "KEYED_COUNT": {"kind": "count", "keyed": True},
            }
        ).encode()
    )


def exp_histogram(**changes) -> dict:
    hist = {
        "range": [1, 100],
        "bucket_count": 5,
        "histogram_type": 0,
        "values": {"0": 1, "5": 2, "22": 0},
        "sum": 12,
    }
    hist.update(changes)
    return hist


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_idle_daily_converts_with_zero_invalid(idle_daily, old_definitions, impl):
    result = convert_payload(idle_daily, old_definitions, impl)
    assert result.invalid == []
    assert sorted(result.unknown) == ["HTTP_OFFLINE_CACHE_DOCUMENT_LOAD", "MIXED_CONTENT_PAGE_LOAD"]
    assert len(result.payload["histograms"]) == 328 - 2
    assert result.payload["ver"] == 2
    compact = result.payload["histograms"]["CACHE_DEVICE_SEARCH_2"]
    # 50 buckets, then sum, log_sum, log_sum_squares and the two missing sum_squares as -1
    assert len(compact) == 55
    assert compact[0] == 5523 and compact[50:] == [523, 82.3832015991211, 244.2482485671876, -1, -1]
    assert sum(compact[:50]) == 5523 + 22 + 1 + 5


def test_idle_daily_counts_land_in_the_bucket_of_their_lower_bound(idle_daily, old_definitions):
    result = convert_payload(idle_daily, old_definitions)
    for name, compact in result.payload["histograms"].items():
        definition = old_definitions.lookup(name)
        for bound, count in idle_daily["histograms"][name]["values"].items():
            assert compact[definition.buckets.index(int(bound))] == count, name


def test_gc_reason_whose_constant_changed_still_converts(idle_daily, old_definitions):
    result = convert_payload(idle_daily, old_definitions)
    assert len(result.payload["histograms"]["GC_REASON_2"]) == 101 + 5


def test_conversion_does_not_modify_the_input(idle_daily, old_definitions):
    before = copy.deepcopy(idle_daily)
    convert_payload(idle_daily, old_definitions)
    assert idle_daily == before


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_esr153_ping_converts_every_defined_histogram(esr_ping, modern_definitions, impl):
    result = convert_payload(esr_ping, modern_definitions, impl)
    assert result.invalid == []
    inner = result.payload["payload"]
    original = esr_ping["payload"]
    for name, hist in original["histograms"].items():
        if name in modern_definitions:
            assert len(inner["histograms"][name]) == hist["bucket_count"] + 5
        else:
            assert name in result.unknown and name not in inner["histograms"]
    for name, by_key in original["keyedHistograms"].items():
        if name in modern_definitions:
            assert set(inner["keyedHistograms"][name]) == set(by_key)
        else:
            assert name in result.unknown and name not in inner["keyedHistograms"]
    for name in original["processes"]["content"]["histograms"]:
        if name not in modern_definitions:
            assert f"content/{name}" in result.unknown
    converted = sum(len(s.get("histograms", {})) for s in inner["processes"].values())
    converted += len(inner["histograms"]) + len(inner["keyedHistograms"])
    assert converted + len(result.unknown) == (
        len(original["histograms"])
        + len(original["keyedHistograms"])
        + sum(
            len(s.get("histograms", {})) + len(s.get("keyedHistograms", {}))
            for s in original["processes"].values()
        )
    )
    assert "ver" not in result.payload or result.payload.get("ver") == esr_ping.get("ver")
    assert inner["info"] == original["info"]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"values": {"0": 1, "6": 2}}, "bucket lower bound '6' is not in the layout"),
        ({"values": {"05": 2}}, "bucket lower bound '05' is not in the layout"),
        ({"values": {"0": -1}}, "count -1 for bucket '0' is not a non-negative integer"),
        ({"values": {"0": 1.5}}, "count 1.5 for bucket '0' is not a non-negative integer"),
        ({"values": {"0": 2.0}}, "count 2.0 for bucket '0' is not a non-negative integer"),
        ({"values": {"0": True}}, "count True for bucket '0' is not a non-negative integer"),
        ({"values": {"0": "3"}}, "count '3' for bucket '0' is not a non-negative integer"),
        ({"bucket_count": 6}, "bucket_count 6 contradicts the definition (expected 5)"),
        ({"range": [1, 1000]}, "range [1, 1000] contradicts the definition (expected [1, 100])"),
        ({"range": [1]}, "range [1] is not a [low, high] pair"),
        ({"histogram_type": 1}, "histogram_type 1 contradicts the definition (expected 0)"),
        ({"values": [1, 2]}, "values is missing or not a JSON object"),
        ({"sum": "12"}, "sum '12' is not a number"),
    ],
)
def test_invalid_histogram_is_removed_with_its_reason(impl, changes, reason):
    payload = {
        "ver": 1,
        "info": {},
        "histograms": {"EXP": exp_histogram(**changes), "FLAG": {"values": {"0": 1}}},
    }
    result = convert_payload(payload, small_definitions(), impl)
    assert result.invalid == [("EXP", reason)]
    assert list(result.payload["histograms"]) == ["FLAG"]
    assert result.payload["histograms"]["FLAG"] == [1, 0, 0, -1, -1, -1, -1, -1]


def test_histogram_that_is_not_an_object_is_invalid():
    result = convert_payload({"histograms": {"EXP": [1, 2]}}, small_definitions())
    assert result.invalid == [("EXP", "histogram is not a JSON object")]


def test_valid_histogram_becomes_counts_then_statistics():
    result = convert_payload(
        {"ver": 1, "histograms": {"EXP": exp_histogram(log_sum=1.5)}}, small_definitions()
    )
    assert result == ConversionResult(
        payload={"ver": 2, "histograms": {"EXP": [1, 0, 2, 0, 0, 12, 1.5, -1, -1, -1]}},
        invalid=[],
        unknown=[],
    )


def test_unknown_histograms_are_listed_not_silently_dropped():
    result = convert_payload(
        {"histograms": {"NEW_THING": exp_histogram(), "FLAG": {"values": {}}}}, small_definitions()
    )
    assert result.unknown == ["NEW_THING"]
    assert list(result.payload["histograms"]) == ["FLAG"]


def test_keyed_definition_sent_plain_and_plain_sent_keyed_are_invalid():
    definitions = small_definitions()
    v4 = {
        "payload": {
            "histograms": {"KEYED_COUNT": {"values": {"0": 1}}},
            "keyedHistograms": {
                "FLAG": {"a": {"values": {"0": 1}}},
                "KEYED_COUNT": {"a": {"values": {"1": 1}}, "b": {"values": {"7": 1}}},
            },
        }
    }
    result = convert_payload(v4, definitions)
    assert ("KEYED_COUNT", "defined as keyed but sent as a plain histogram") in result.invalid
    assert ("FLAG", "sent as keyed but the definition is not keyed") in result.invalid
    assert ("KEYED_COUNT[b]", "bucket lower bound '7' is not in the layout") in result.invalid
    assert result.payload["payload"]["keyedHistograms"] == {
        "KEYED_COUNT": {"a": [0, 1, 0, -1, -1, -1, -1, -1]}
    }
    assert result.payload["payload"]["histograms"] == {}


def test_malformed_sections_are_reported_not_raised():
    result = convert_payload(
        {"payload": {"histograms": [], "keyedHistograms": 3, "processes": {"gpu": None}}},
        small_definitions(),
    )
    assert ("*", "histograms is not a JSON object") in result.invalid
    assert ("*", "keyedHistograms is not a JSON object") in result.invalid
    assert result.payload["payload"]["processes"] == {"gpu": None}


def test_revision_of_reads_v1_and_v4_payloads(idle_daily, esr_ping):
    assert (
        revision_of(idle_daily) == "http://hg.mozilla.org/releases/mozilla-release/rev/a55c55edf302"
    )
    assert revision_of(esr_ping).endswith("/rev/a9effd9e521653405f0ffd311e8edf90bde92237")
    assert (
        revision_of(
            {
                "payload": {"info": {}},
                "environment": {"build": {"revision": "https://x/y/rev/abcdef"}},
            }
        )
        == "https://x/y/rev/abcdef"
    )
    assert revision_of({"info": {"revision": 5}}) is None
    assert revision_of({}) is None


def test_convert_cli_converts_through_a_preseeded_cache(shared_fixtures, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "histograms",
            "convert",
            str(shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz"),
            "--cache",
            str(shared_fixtures / "histograms"),
            "--base-url",
            "http://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ver"] == 2
    assert "unknown MIXED_CONTENT_PAGE_LOAD" in result.stderr and "invalid: 0" in result.stderr


def test_convert_cli_reports_unavailable_revision(shared_fixtures, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "histograms",
            "convert",
            str(shared_fixtures / "firefox/main-ping-esr153.json"),
            "--cache",
            str(tmp_path),
            "--base-url",
            "http://127.0.0.1:9",
            "--timeout",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3
    assert "RevisionUnavailable" in result.stderr


def test_convert_cli_rejects_unreadable_payload(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{nope")
    result = subprocess.run(
        [sys.executable, "-m", "histograms", "convert", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "cannot read payload" in result.stderr


def test_package_falls_back_to_the_twin_and_says_so():
    script = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout); "
        "sys.modules['histograms._fast'] = None; "
        "import histograms.convert as c; print('IMPL', c.IMPLEMENTATION, c._impl.__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert "IMPL python histograms._slow" in result.stdout
    assert "uses the python implementation" in result.stdout


@pytest.mark.skipif(convert.IMPLEMENTATION != "cython", reason="Cython extension not built")
def test_built_package_uses_cython_by_default():
    assert convert._impl.__name__ == "histograms._fast"
