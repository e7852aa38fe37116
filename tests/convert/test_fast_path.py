"""Hostile text on convert's fast path: whatever the bytes, the same outcome as the general path.

The fast path reads a v1 payload's histograms section with a hand-written C reader, so every
damaged or odd variant of the real idle-daily payload here (bytes flipped, inserted, deleted,
the text cut short, numbers and names rewritten) must give exactly the outcome, output line
and error text of parsing the whole document first, and must never crash the process.
"""

from __future__ import annotations

import dataclasses
import gzip
import random

import pytest

from convert.histogram_tools import real_tools
from convert.record import RecordConverter
from histograms.convert import IMPLEMENTATION
from pipeline.config import load_settings
from pipeline.layout import Schema
from pipeline.records import Record
from tests.support.convert import RECEIVED_MS, seed_histogram_cache

pytestmark = pytest.mark.skipif(
    IMPLEMENTATION != "cython", reason="the fast path needs the compiled reader"
)

CASES = 400
TOKENS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b'"',
    b"\\",
    b"-",
    b".",
    b"e5",
    b"0",
    b"01",
    b"null",
    b"1.50",
    b"\xff",
    b"\x00",
    b" ",
    b"\\u0041",
    b"99999999999999999999",
]


def _variants(text: bytes, count: int, whole: bool) -> list[bytes]:
    rng = random.Random(19 + whole)
    start, end = (0, len(text)) if whole else (text.index(b'"histograms":'), len(text) - 2_000)
    out = []
    for _ in range(count):
        data = bytearray(text)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(start, min(end, len(data)))
            action = rng.randrange(5)
            if action == 0:
                data[at] = rng.randrange(256)
            elif action == 1:
                data[at:at] = rng.choice(TOKENS)
            elif action == 2:
                del data[at : at + rng.randint(1, 8)]
            elif action == 3:
                data[at : at + 1] = rng.choice(TOKENS)
            else:
                del data[at:]
        out.append(bytes(data))
    return out


def test_damaged_payloads_convert_as_on_the_general_path(
    data_dir, tmp_path, shared_fixtures, monkeypatch
):
    cache = seed_histogram_cache(shared_fixtures, tmp_path / "cache")
    monkeypatch.setenv("TELEMETRY_HISTOGRAM_CACHE", str(cache))
    monkeypatch.setenv("TELEMETRY_HG_BASE_URL", "http://127.0.0.1:9")
    fast = RecordConverter(real_tools(load_settings()), Schema.load(), 1 << 24)
    general = RecordConverter(  # its own revision cache: failures are remembered per cache
        dataclasses.replace(real_tools(load_settings()), split_payload=None),
        Schema.load(),
        1 << 24,
    )
    text = gzip.decompress(
        (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
    )
    path = (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.path").read_text().strip()
    kinds = set()
    for data in _variants(text, CASES, False) + _variants(text, CASES // 4, True):
        record = Record(RECEIVED_MS, path, {"Geo-Country": "DE"}, data)
        expected = general.convert(record, "fuzz")
        assert fast.convert(record, "fuzz") == expected, data[:0]
        kinds.add(expected.kind)
    assert {"published", "bad_json"} <= kinds  # both damaged and still-valid variants were met
