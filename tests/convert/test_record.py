"""Unit tests of the per-record decisions: paths, dimensions, gunzip limits, outcomes."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from convert import outcomes as oc
from convert.decode import decoded_body
from convert.dimensions import parse_path, raw_dimensions, submission_date
from convert.outcomes import RecordRejected
from convert.record import HISTOGRAM_ERRORS_KEY, RecordConverter
from pipeline.layout import Schema
from pipeline.records import Record
from tests.support.convert import (
    RECEIVED_MS,
    STUB_REVISION,
    stub_tools,
    telemetry_path,
    v1_payload,
)

DOC = "1c2b3a4d-0000-4000-8000-000000000001"


def converter(available: bool = True, limit: int = 1 << 20) -> RecordConverter:
    return RecordConverter(stub_tools(available), Schema.load(), limit)


def record(path: str, body: bytes, headers: dict | None = None) -> Record:
    return Record(RECEIVED_MS, path, headers or {}, body)


def test_full_telemetry_path_gives_all_url_dimensions_and_ignores_query():
    sub = parse_path(f"/submit/telemetry/{DOC}/main/Firefox/153.7.0/esr/20261103151912?v=4")
    assert sub.doc_id == DOC
    assert dict(sub.url_dims) == {
        "reason": "main",
        "appName": "Firefox",
        "appVersion": "153.7.0",
        "appUpdateChannel": "esr",
        "appBuildID": "20261103151912",
    }


def test_generic_namespace_path_is_parsed():
    sub = parse_path(f"/submit/firefox-desktop/events/1/{DOC}")
    assert (sub.namespace, sub.doc_type, sub.doc_version, sub.doc_id) == (
        "firefox-desktop",
        "events",
        "1",
        DOC,
    )


@pytest.mark.parametrize(
    "path",
    [
        "/submit/telemetry",
        "/other/telemetry/x",
        "/submit/ns/a/b",
        f"/submit/telemetry/{DOC}/a/b/c/d/e/f",
        "/submit/telemetry//main",
        "/submit/telemetry/has space",
    ],
)
def test_unusable_paths_are_bad_path(path):
    with pytest.raises(RecordRejected) as info:
        parse_path(path)
    assert info.value.reason == oc.BAD_PATH


def test_v4_dimensions_fall_back_to_application():
    sub = parse_path(f"/submit/telemetry/{DOC}")
    ping = {
        "type": "main",
        "application": {
            "name": "Firefox",
            "version": "153.7.0",
            "channel": "esr",
            "buildId": "2026",
        },
    }
    dims = raw_dimensions(sub, ping, RECEIVED_MS)
    assert dims == {
        "reason": "main",
        "appName": "Firefox",
        "appVersion": "153.7.0",
        "appUpdateChannel": "esr",
        "appBuildID": "2026",
        "submission_date": "20231114",
    }


def test_v1_dimensions_fall_back_to_info_and_url_wins():
    sub = parse_path(f"/submit/telemetry/{DOC}/saved-session")
    dims = raw_dimensions(sub, v1_payload(appVersion="22.0"), RECEIVED_MS)
    assert dims["reason"] == "saved-session" and dims["appVersion"] == "22.0"
    assert dims["appUpdateChannel"] == "release" and dims["appBuildID"] == "20130814063812"


def test_wrong_type_dimension_values_are_ignored():
    sub = parse_path(f"/submit/telemetry/{DOC}")
    dims = raw_dimensions(
        sub, {"info": {"appName": ["x"], "appVersion": True}, "application": "nope"}, RECEIVED_MS
    )
    assert dims.get("appName") is None and dims.get("appVersion") is None


def test_submission_date_is_utc_day():
    assert submission_date(1_700_000_000_000) == "20231114"
    assert submission_date(10**20) == "UNKNOWN"


def test_gzip_body_is_decompressed_by_magic_or_header():
    data = b'{"a": 1}'
    assert decoded_body(gzip.compress(data), {}, 100) == data
    assert decoded_body(gzip.compress(data), {"Content-Encoding": "gzip"}, 100) == data
    assert decoded_body(data, {}, 100) == data


def test_gzip_bomb_stops_at_the_limit():
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    with pytest.raises(RecordRejected) as info:
        decoded_body(bomb, {}, 8 * 1024 * 1024)
    assert info.value.reason == oc.TOO_LARGE


def test_plain_body_over_the_limit_is_too_large():
    with pytest.raises(RecordRejected) as info:
        decoded_body(b"x" * 101, {}, 100)
    assert info.value.reason == oc.TOO_LARGE


@pytest.mark.parametrize(
    "body,headers",
    [
        (gzip.compress(b'{"a": 1}', mtime=0)[:-12], {}),  # truncated stream
        (b"\x1f\x8b" + b"garbage" * 5, {}),  # damaged
        (b'{"a": 1}', {"content-encoding": "gzip"}),  # declared gzip, is not
    ],
    ids=["truncated", "damaged", "declared-only"],
)
def test_damaged_gzip_is_corrupt_gzip(body, headers):
    with pytest.raises(RecordRejected) as info:
        decoded_body(body, headers, 1000)
    assert info.value.reason == oc.CORRUPT_GZIP


def test_v1_record_is_published_at_its_partition_with_converted_histograms():
    outcome = converter().convert(
        record(telemetry_path(DOC), gzip.compress(json.dumps(v1_payload()).encode())), "batch1"
    )
    assert outcome.kind == oc.PUBLISHED
    assert (
        outcome.partition
        == "idle_daily/Firefox/release/23.0.1/20130814063812.20231114.v2.log.batch1.lz4"
    )
    doc_id, text = outcome.line.rstrip(b"\n").split(b"\t")
    assert doc_id.decode() == DOC
    assert json.loads(text)["histograms"] == {"A": [3]} and json.loads(text)["ver"] == 2


def test_invalid_and_unknown_histograms_are_removed_and_listed():
    payload = v1_payload()
    payload["histograms"].update({"B": {"values": {"0": "x"}}, "Z": {"values": {}}})
    outcome = converter().convert(record(telemetry_path(DOC), json.dumps(payload).encode()), "b")
    assert outcome.kind == oc.PUBLISHED and outcome.lost_histograms
    doc = json.loads(outcome.line.split(b"\t", 1)[1])
    assert doc["histograms"] == {"A": [3]}
    assert doc[HISTOGRAM_ERRORS_KEY] == {
        "invalid": [["B", "values must be integer counts"]],
        "unknown": ["Z"],
    }


@pytest.mark.parametrize(
    "body,reason",
    [
        (b'{"ver": 1, "info": {', oc.BAD_JSON),
        (b'\xff\xfe{"x": 1}', oc.BAD_JSON),
        (b"[1, 2]", oc.BAD_PAYLOAD),
        (json.dumps({"ver": 1, "info": {}, "histograms": {"A": {}}}).encode(), oc.MISSING_REVISION),
        (
            json.dumps(v1_payload(revision="https://hg.example/other/rev/1")).encode(),
            oc.MISSING_REVISION,
        ),
        (json.dumps(dict(v1_payload(), histograms=[1, 2])).encode(), oc.INVALID_HISTOGRAM),
        (zlib.compress(b"{}"), oc.BAD_JSON),
    ],
    ids=["truncated", "not-utf8", "array", "no-revision", "unknown-revision", "wrong-type", "zlib"],
)
def test_bad_records_get_their_reason(body, reason):
    outcome = converter().convert(record(telemetry_path(DOC), body), "b")
    assert outcome.kind == reason
    assert (
        outcome.doc_id == DOC and outcome.doc_type == "idle_daily" and outcome.channel == "release"
    )


def test_bad_path_record_has_no_doc_id():
    outcome = converter().convert(record("/nope", b"{}"), "b")
    assert (outcome.kind, outcome.doc_id) == (oc.BAD_PATH, "")


def test_unavailable_revision_is_parked():
    outcome = converter(available=False).convert(
        record(telemetry_path(DOC), json.dumps(v1_payload()).encode()), "b"
    )
    assert outcome.kind == oc.PARKED and STUB_REVISION in outcome.details


def test_payload_without_histograms_or_revision_is_published_unconverted():
    ping = {
        "type": "event",
        "application": {"name": "Firefox", "channel": "esr"},
        "payload": {"events": {}},
    }
    outcome = converter().convert(
        record(f"/submit/telemetry/{DOC}/event/Firefox/1/esr/2?v=4", json.dumps(ping).encode()), "b"
    )
    assert outcome.kind == oc.PUBLISHED
    assert json.loads(outcome.line.split(b"\t", 1)[1]) == ping


def test_generic_namespace_record_goes_under_namespaces():
    outcome = converter().convert(
        record(f"/submit/firefox-desktop/baseline/1/{DOC}", b'{"k": 1}'), "b"
    )
    assert outcome.kind == oc.PUBLISHED
    assert outcome.partition == "namespaces/firefox_desktop/baseline/1/20231114/b.lz4"


def test_converter_exception_is_invalid_histogram_not_a_crash():
    import dataclasses

    def explode(payload, definitions):
        raise AttributeError("'list' object has no attribute 'items'")

    tools = dataclasses.replace(stub_tools(), convert_payload=explode)
    outcome = RecordConverter(tools, Schema.load(), 1 << 20).convert(
        record(telemetry_path(DOC), json.dumps(v1_payload()).encode()), "b"
    )
    assert outcome.kind == oc.INVALID_HISTOGRAM and "AttributeError" in outcome.details


def test_real_tools_fall_back_to_the_codec_for_huge_integers(settings):
    from convert.histogram_tools import real_tools

    dumps = real_tools(settings).dumps
    assert json.loads(dumps({"n": 2**70})) == {"n": 2**70}
    assert json.loads(dumps({"n": 1})) == {"n": 1}


def test_v1_payload_without_histograms_is_published_as_ver_2():
    """Every line of a `.v2.log` object says `ver: 2`; the histogram-less v1 ping said 1."""
    payload = {"ver": 1, "info": {"reason": "idle-daily", "appName": "Firefox"}}
    outcome = converter().convert(record(telemetry_path(DOC), json.dumps(payload).encode()), "b1")
    assert outcome.kind == oc.PUBLISHED
    assert json.loads(outcome.line.split(b"\t", 1)[1])["ver"] == 2


def test_unknown_generic_namespace_goes_to_unknown_namespace_before_decoding():
    outcome = converter().convert(record(f"/submit/ns/dt7/1/{DOC}", b"not even json"), "b1")
    assert outcome.kind == oc.UNKNOWN_NAMESPACE and "ns/dt7" in outcome.details
