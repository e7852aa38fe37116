"""Bucket layouts must match Firefox's exactly, or real payloads' buckets would not be found."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from histograms.buckets import exponential_buckets, layout_for, linear_buckets
from histograms.definitions import load_definitions

REVISION = "histograms/releases/mozilla-release/a55c55edf302/Histograms.json"
MODERN = "histograms/enterprise-firefox-72a855fe/Histograms.json"


@pytest.fixture(scope="module")
def reference(shared_fixtures):
    return json.loads((shared_fixtures / "histograms/a55c55edf302.buckets.json").read_text())[
        "histograms"
    ]


@pytest.fixture(scope="module")
def old_definitions(shared_fixtures):
    return load_definitions(shared_fixtures / REVISION)


def test_every_reference_layout_is_reproduced(reference, old_definitions):
    assert len(reference) == 731
    mismatches = []
    for name, expected in reference.items():
        definition = old_definitions.lookup(name)
        assert definition is not None, f"{name} has no definition"
        got = {
            "kind": str(definition.kind_code),
            "min": definition.low,
            "max": definition.high,
            "bucket_count": definition.bucket_count,
            "buckets": list(definition.buckets),
        }
        if got != expected:
            mismatches.append((name, got, expected))
    assert mismatches == []


def test_startup_copies_share_the_definition_of_the_plain_histogram(old_definitions):
    assert "STARTUP_HTTP_PAGE_DNS_LOOKUP_TIME" not in old_definitions
    assert (
        old_definitions.lookup("STARTUP_HTTP_PAGE_DNS_LOOKUP_TIME")
        is old_definitions["HTTP_PAGE_DNS_LOOKUP_TIME"]
    )
    assert old_definitions.lookup("STARTUP_NO_SUCH_THING") is None


def test_exponential_layout_follows_firefox_rounding():
    # worked by hand: next = floor(exp(log(cur) + (log(high) - log(cur)) / remaining) + 0.5)
    assert exponential_buckets(1, 100, 5) == (0, 1, 5, 22, 100)


def test_exponential_grows_by_one_where_rounding_stalls():
    # the first step rounds back to 1, so Firefox takes 2 instead
    assert exponential_buckets(1, 10, 8) == (0, 1, 2, 3, 4, 5, 7, 10)


def test_linear_layout_rounds_half_up():
    assert linear_buckets(1, 11, 12) == tuple(range(12))
    assert linear_buckets(1, 100, 5) == (0, 1, 34, 67, 100)


def test_unknown_kind_has_no_layout():
    with pytest.raises(ValueError, match="unknown histogram kind"):
        layout_for("gaussian", 1, 10, 5)


def test_modern_layouts_agree_with_a_real_esr153_ping(shared_fixtures):
    definitions = load_definitions(shared_fixtures / MODERN)
    ping = json.loads((shared_fixtures / "firefox/main-ping-esr153.json").read_text())
    payload = ping["payload"]
    sections = [payload["histograms"]]
    sections += [p.get("histograms", {}) for p in payload["processes"].values()]
    plain = [(n, h) for s in sections for n, h in s.items()]
    keyed = [(n, h) for n, by_key in payload["keyedHistograms"].items() for h in by_key.values()]
    checked = 0
    for name, hist in plain + keyed:
        definition = definitions.get(name)
        if definition is None:
            continue
        checked += 1
        assert hist["histogram_type"] == definition.kind_code, name
        assert hist["bucket_count"] == definition.bucket_count, name
        assert hist["range"] == [definition.low, definition.high], name
        assert {int(k) for k in hist["values"]} <= set(definition.buckets), name
    assert checked >= 10


def test_buckets_cli_prints_the_reference_form(shared_fixtures, reference):
    result = subprocess.run(
        [sys.executable, "-m", "histograms", "buckets", str(shared_fixtures / REVISION)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    printed = json.loads(result.stdout)["histograms"]
    assert len(printed) == 524
    common = [name for name in reference if name in printed]
    assert len(common) > 500
    for name in common:
        assert printed[name] == reference[name], name


def test_buckets_cli_lists_bad_definitions_and_fails(tmp_path):
    path = tmp_path / "Histograms.json"
    path.write_text(json.dumps({"GOOD": {"kind": "flag"}, "BAD": {"kind": "linear", "high": 10}}))
    result = subprocess.run(
        [sys.executable, "-m", "histograms", "buckets", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "BAD" in result.stderr and "n_buckets" in result.stderr
    assert list(json.loads(result.stdout)["histograms"]) == ["GOOD"]
