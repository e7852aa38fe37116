"""The native scanner of the aggregates' mapper gives exactly what the general (orjson) path
gives, and hands every record it cannot read exactly to that path."""

from __future__ import annotations

import gzip
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.extract import merge_metric_maps, record_sections

scan_module = pytest.importorskip("aggregates._scan", reason="the Cython scanner is not built")

H = [3, 1, 0, 5, 12, -1, -1, 0]  # 3 buckets, sum 12 + statistics


def both_paths(record: dict) -> tuple[dict, dict]:
    """(merged through the scanner, merged through orjson) for one record's text."""
    data = orjson.dumps(record)
    found = scan_module.scan(data)
    general = merge_metric_maps(iter([("r", *record_sections(json.loads(data)))]))[1]
    if found is None:
        return None, general
    names, lengths, values, rest = found
    simple = record_sections(orjson.loads(rest))[1]
    fast = merge_metric_maps(iter([("b", (tuple(names), tuple(lengths)), values, simple)]))[1]
    return fast, general


@pytest.mark.parametrize(
    "record",
    [
        {"ver": 2, "histograms": {"A": H, "B": [1.5, 0, 2, 1e3, 2.5e-1, -1, 0.5, 0]}},
        {"ver": 2, "histograms": {"A": H, "short": [1, 2, 3], "obj": {"x": 1}, "nul": None}},
        {"payload": {"histograms": {"A": H}, "keyedHistograms": {"K": {"a,b#c/d": H, "e": 5}},
                     "processes": {"parent": {"histograms": {"P": H}},
                                   "content": {"histograms": {"A": H},
                                               "keyedHistograms": {"K": {"x": H}}},
                                   "gpu": None},
                     "simpleMeasurements": {"main": 7}}},
        {"payload": None, "histograms": {"A": H}, "simpleMeasurements": {"uptime": 3}},
        {"info": {"s": 'brace } ] \\" in a string'}, "histograms": {"A": H}},
    ],
)  # fmt: skip
def test_scanner_reads_what_orjson_reads(record):
    fast, general = both_paths(record)
    assert fast is not None
    assert fast == general


@pytest.mark.parametrize(
    "text",
    [
        b'{"histograms": {"A": [1, "x", 3, 0, 0, 0, 0, 0]}}',  # a non-number
        b'{"histograms": {"A": [1, true, 3, 0, 0, 0, 0, 0]}}',  # a literal
        b'{"histograms": {"A\\u0041": [1, 2, 3, 0, 0, 0, 0, 0]}}',  # an escaped name
        b'{"histograms": {"A": [1, 2, 3, 0, 0, 0, 0, 0], "A": [1, 2, 3, 0, 0, 0, 0, 0]}}',
        b'{"histograms": {"A": [12345678901234567890, 2, 3, 0, 0, 0, 0, 0]}}',  # > 64 bits
        b'{"histograms": {"A": [1, 2, 3, 0, 0, 0, 0, 0]}, "payload": {"histograms": {}}}',
        b'{"histograms": {"A": [1, 2, 3, 0, 0, 0',  # truncated
        b"[1, 2, 3]",
    ],
)
def test_what_the_scanner_cannot_read_exactly_goes_the_general_way(text):
    assert scan_module.scan(text) is None


counts = st.lists(st.integers(0, 10**12), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(
    histograms=st.dictionaries(st.from_regex(r"[A-Z_]{1,12}", fullmatch=True), counts, max_size=8),
    keyed=st.dictionaries(st.text(max_size=6), counts, max_size=3),
    v4=st.booleans(),
)
def test_generated_records_agree(histograms, keyed, v4):
    compact = {name: [*c, sum(c), -1, -1, 0, 0] for name, c in histograms.items()}
    keyed_compact = {key: [*c, 7, -1, -1, 0, 0] for key, c in keyed.items()}
    if v4:
        record = {"payload": {"histograms": compact, "keyedHistograms": {"K": keyed_compact}}}
    else:
        record = {"ver": 2, "histograms": compact}
    fast, general = both_paths(record)
    if fast is None:  # only an escaped key may send it the general way
        assert any("\\" in orjson.dumps(k).decode() for k in keyed)
    else:
        assert fast == general


def test_real_payloads_agree(shared_fixtures):
    from histograms.convert import convert_payload
    from histograms.definitions import load_definitions

    raw = json.loads(
        gzip.decompress(
            (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
        )
    )
    old = load_definitions(
        shared_fixtures / "histograms/releases/mozilla-release/a55c55edf302/Histograms.json"
    )
    esr = json.loads((shared_fixtures / "firefox/main-ping-esr153.json").read_text())
    new = load_definitions(
        shared_fixtures / "histograms/enterprise-firefox-72a855fe/Histograms.json"
    )
    for record in (convert_payload(raw, old).payload, convert_payload(esr, new).payload):
        fast, general = both_paths(record)
        assert fast is not None and fast == general and len(fast) > 10
