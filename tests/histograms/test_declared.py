"""Definitions from a payload's own declarations agree with the real Histograms.json.

When a revision is out of reach convert converts with `definitions_from_payload`; for every
histogram both know, the compact arrays must be exactly those the revision's definitions give.
"""

from __future__ import annotations

import gzip
import json

from histograms.convert import convert_payload
from histograms.declared import definitions_from_payload
from histograms.definitions import load_definitions


def _agree(payload: dict, definitions, flatten) -> int:
    declared = convert_payload(payload, definitions_from_payload(payload))
    real = convert_payload(payload, definitions)
    mine, theirs = flatten(declared.payload), flatten(real.payload)
    common = [name for name in theirs if name in mine]
    for name in common:
        assert mine[name] == theirs[name], name
    return len(common)


def test_v1_idle_daily_declared_layouts_match_its_revision(shared_fixtures):
    payload = json.loads(
        gzip.decompress(
            (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
        )
    )
    definitions = load_definitions(
        shared_fixtures / "histograms/releases/mozilla-release/a55c55edf302/Histograms.json"
    )
    assert _agree(payload, definitions, lambda doc: doc["histograms"]) >= 300
    declared = convert_payload(payload, definitions_from_payload(payload))
    assert declared.payload["ver"] == 2 and not declared.invalid


def test_v4_esr_declared_layouts_match_a_modern_histograms_json(shared_fixtures):
    payload = json.loads((shared_fixtures / "firefox/main-ping-esr153.json").read_text())
    definitions = load_definitions(
        shared_fixtures / "histograms/enterprise-firefox-72a855fe/Histograms.json"
    )

    def flatten(doc: dict) -> dict:
        inner = doc["payload"]
        found = dict(inner.get("histograms", {}))
        for name, keys in inner.get("keyedHistograms", {}).items():
            found.update({f"{name}[{k}]": v for k, v in keys.items()})
        for process, section in inner.get("processes", {}).items():
            found.update({f"{process}/{n}": v for n, v in section.get("histograms", {}).items()})
        return found

    assert _agree(payload, definitions, flatten) >= 10
