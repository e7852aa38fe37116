"""The published layout: sanitising, key round trips, filters and prefix pruning."""

from __future__ import annotations

import json
import os
import re
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.layout import (
    DIMENSIONS,
    DIRECTORY_DIMENSIONS,
    OTHER,
    UNKNOWN,
    InputFilter,
    LayoutError,
    Schema,
    dimensions_from_key,
    error_key,
    list_matching,
    namespace_key,
    published_key,
    sanitize,
    sort_key,
)
from pipeline.stores.local import LocalStore

SAFE = re.compile(r"^[A-Za-z0-9_.]+$")
DEFAULT_SCHEMA = Schema.load()
OPEN_SCHEMA = Schema({})  # every value allowed: exercises sanitising of arbitrary text

raw_values = st.one_of(
    st.none(), st.text(max_size=30), st.integers(), st.sampled_from(["", ".", "..", "a/b"])
)
raw_dimensions = st.fixed_dictionaries({name: raw_values for name in DIMENSIONS})
object_ids = st.text(min_size=1, max_size=20).filter(lambda s: re.search(r"[^/]", s) is not None)


# -- sanitising ---------------------------------------------------------------------------------


@given(st.text())
def test_sanitize_is_idempotent_and_safe(value):
    once = sanitize(value)
    assert sanitize(once) == once
    assert SAFE.match(once)
    assert set(once) != {"."}  # never "." or "..": a path component must not be relative


def test_sanitize_replaces_unsafe_characters_and_slashes():
    assert sanitize("Firefox OS/1.0") == "Firefox_OS_1.0"
    assert sanitize("nightly-ux") == "nightly_ux"
    assert sanitize("") == UNKNOWN
    assert sanitize("..") == "__"


# -- keys ---------------------------------------------------------------------------------------


@given(raw_dimensions, object_ids, st.sampled_from([DEFAULT_SCHEMA, OPEN_SCHEMA]))
def test_published_key_round_trips_to_the_applied_dimensions(raw, object_id, schema):
    dims = schema.apply(raw)
    key = published_key(dims, object_id)
    assert dimensions_from_key(key) == dims
    assert key.count("/") == len(DIRECTORY_DIMENSIONS)


def test_schema_apply_maps_unknown_values_to_other_and_missing_to_unknown():
    dims = DEFAULT_SCHEMA.apply(
        {
            "reason": "saved-session",
            "appName": "Netscape",
            "appVersion": "23.0a1",
            "appBuildID": None,
        }
    )
    assert dims["reason"] == "saved_session"
    assert dims["appName"] == OTHER
    assert dims["appUpdateChannel"] == UNKNOWN
    assert dims["appVersion"] == "23.0a1"
    assert dims["appBuildID"] == UNKNOWN


def test_reserved_top_level_names_never_become_a_reason():
    assert OPEN_SCHEMA.apply({"reason": "errors"})["reason"] == OTHER
    assert OPEN_SCHEMA.apply({"reason": "namespaces"})["reason"] == OTHER


def test_published_key_has_the_original_shape():
    dims = {
        "reason": "idle_daily",
        "appName": "Firefox",
        "appUpdateChannel": "nightly",
        "appVersion": "23.0a1",
        "appBuildID": "20130424030205",
        "submission_date": "20130425",
    }
    key = published_key(dims, "batch-0001")
    assert key == "idle_daily/Firefox/nightly/23.0a1/20130424030205.20130425.v2.log.batch-0001.lz4"


def test_dotted_submission_date_still_round_trips():
    dims = OPEN_SCHEMA.apply({"submission_date": "2013.04.25", "appBuildID": "1.2.3"})
    assert dimensions_from_key(published_key(dims, "x")) == dims


@pytest.mark.parametrize(
    "key",
    ["a/b/c", "a/b/c/d/e/f", "a/b/c/d/not-a-published-name.txt", "a/b/c/d/x.v2.log.id.lz4"],
)
def test_dimensions_from_key_rejects_other_keys(key):
    with pytest.raises(LayoutError):
        dimensions_from_key(key)


def test_error_and_namespace_keys_live_outside_the_dimension_tree():
    assert error_key("bad json", "20130425", "b1") == "errors/bad_json/20130425/b1.lz4"
    assert namespace_key("glean", "metrics", "1", "20240101", "b1") == (
        "namespaces/glean/metrics/1/20240101/b1.lz4"
    )
    assert not InputFilter.everything().matches_key(error_key("x", "20130425", "b1"))


# -- version ordering and ranges ---------------------------------------------------------------


def test_versions_compare_numerically_not_as_strings():
    assert sort_key("9.0") < sort_key("10.0")
    assert sort_key("23.0a1") < sort_key("23.0a2") < sort_key("23.0b1") < sort_key("23.0")
    assert sort_key("23.0") < sort_key("23.0.1") < sort_key("24.0")
    assert sort_key("20130101000000") < sort_key("20131231000000")


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 99), st.integers(0, 99))
def test_version_order_follows_the_numbers(major_a, major_b, minor_a, minor_b):
    a, b = f"{major_a}.{minor_a}", f"{major_b}.{minor_b}"
    assert (sort_key(a) < sort_key(b)) == ((major_a, minor_a) < (major_b, minor_b))


def test_min_max_filter_compares_versions_numerically():
    selected = InputFilter({"appVersion": {"min": "9.0", "max": "10.0"}})
    assert selected.matches_value("appVersion", "9.0")
    assert selected.matches_value("appVersion", "9.5")
    assert selected.matches_value("appVersion", "10.0")
    assert not selected.matches_value("appVersion", "8.0")
    assert not selected.matches_value("appVersion", "11.0")
    assert not selected.matches_value("appVersion", "100.0")  # "100.0" < "9.0" as strings
    assert not selected.matches_value("appVersion", UNKNOWN)


def test_open_ended_build_id_range():
    since = InputFilter({"appBuildID": {"min": "20130401000000"}})
    assert since.matches_value("appBuildID", "20130424030205")
    assert not since.matches_value("appBuildID", "20130331235959")


def test_filter_values_are_sanitised_like_published_values():
    chosen = InputFilter.load(
        {"dimensions": [{"field_name": "reason", "allowed_values": ["saved-session"]}]}
    )
    assert chosen.matches_value("reason", "saved_session")
    assert not chosen.matches_value("reason", "idle_daily")


@pytest.mark.parametrize(
    "spec, problem",
    [
        ({"dimensions": [{"field_name": "colour"}]}, "unknown dimension"),
        ({"dimensions": [{"allowed_values": "*"}]}, "field_name"),
        ({"dimensions": [{"field_name": "appVersion", "allowed_values": {"low": 1}}]}, "min"),
        ({"dimensions": [{"field_name": "appVersion", "allowed_values": 7}]}, "allowed_values"),
        ({"nodims": []}, "dimensions"),
    ],
)
def test_malformed_filters_are_refused_with_the_reason(spec, problem):
    with pytest.raises(LayoutError, match=problem):
        InputFilter.load(spec)


def test_filter_file_errors_name_the_file(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        InputFilter.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(LayoutError, match="broken.json: not valid JSON"):
        InputFilter.load(broken)


# -- pruning: a filter never skips a matching file and never lists what it excludes -------------

REASONS = ["idle_daily", "saved_session", "main", OTHER]
APPS = ["Firefox", "Fennec"]
CHANNELS = ["release", "beta", "nightly"]
VERSIONS = ["9.0", "10.0", "23.0a1", "23.0", UNKNOWN]
BUILDS = ["20130101000000", "20130601000000", "20140101000000"]
DATES = ["20131001", "20131002", "20131103"]
CHOICES = dict(zip(DIMENSIONS, [REASONS, APPS, CHANNELS, VERSIONS, BUILDS, DATES], strict=True))

partition = st.fixed_dictionaries(
    {name: st.sampled_from(values) for name, values in CHOICES.items()}
)


@st.composite
def allowed_values(draw, values):
    kind = draw(st.sampled_from(["*", "one", "list", "range", "min", "max"]))
    if kind == "*":
        return "*"
    if kind == "one":
        return draw(st.sampled_from(values))
    if kind == "list":
        return draw(st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True))
    low, high = sorted(
        draw(st.lists(st.sampled_from(values), min_size=2, max_size=2)), key=sort_key
    )
    return {"range": {"min": low, "max": high}, "min": {"min": low}, "max": {"max": high}}[kind]


@st.composite
def input_filters(draw):
    dims = []
    for name, values in CHOICES.items():
        if draw(st.booleans()):
            dims.append({"field_name": name, "allowed_values": draw(allowed_values(values))})
    return InputFilter.load({"dimensions": dims})


class RecordingStore(LocalStore):
    """A directory store that remembers every prefix it was asked to list."""

    def __init__(self, root: str) -> None:
        super().__init__(f"file://{root}", root)
        self.listed: list[str] = []

    def list(self, prefix: str = ""):
        self.listed.append(prefix)
        return super().list(prefix)

    def list_prefixes(self, prefix: str = ""):
        self.listed.append(prefix)
        return super().list_prefixes(prefix)


def _write(root: str, key: str) -> None:
    path = os.path.join(root, *key.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as out:
        out.write(b"x")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(partition, st.sampled_from(["b1", "b2"])), min_size=1, max_size=25),
    input_filters(),
)
def test_list_matching_equals_brute_force_and_never_enters_excluded_directories(files, chosen):
    extra = [
        error_key("bad_json", "20131001", "b1"),
        namespace_key("glean", "metrics", "1", "20131001", "b1"),
        "main/Firefox/release/stray-file-at-the-wrong-depth",
        "main/Firefox/release/9.0/deeper/20130101000000.20131001.v2.log.b1.lz4",
    ]
    with tempfile.TemporaryDirectory() as root:
        all_keys = sorted({published_key(dims, oid) for dims, oid in files} | set(extra))
        for key in all_keys:
            _write(root, key)
        store = RecordingStore(root)
        found = [info.key for info in list_matching(store, chosen)]
        assert found == [key for key in all_keys if chosen.matches_key(key)]
        for prefix in store.listed:
            parts = prefix.split("/")[:-1]
            assert len(parts) <= len(DIRECTORY_DIMENSIONS)
            if parts:
                assert parts[0] not in ("errors", "namespaces")
            for dimension, value in zip(DIRECTORY_DIMENSIONS, parts, strict=False):
                assert chosen.matches_value(dimension, value), f"listed excluded {prefix!r}"


def test_list_matching_reads_a_filter_file(tmp_path):
    spec = {
        "dimensions": [
            {"field_name": "reason", "allowed_values": ["saved-session"]},
            {"field_name": "appVersion", "allowed_values": {"min": "9.0", "max": "10.0"}},
        ]
    }
    (tmp_path / "filter.json").write_text(json.dumps(spec))
    chosen = InputFilter.load(tmp_path / "filter.json")
    root = tmp_path / "published"
    wanted = published_key(
        DEFAULT_SCHEMA.apply(
            {
                "reason": "saved-session",
                "appName": "Firefox",
                "appUpdateChannel": "release",
                "appVersion": "10.0",
                "appBuildID": "20130101000000",
                "submission_date": "20131001",
            }
        ),
        "b1",
    )
    unwanted = wanted.replace("/10.0/", "/100.0/")
    for key in (wanted, unwanted):
        _write(str(root), key)
    assert [i.key for i in list_matching(LocalStore(f"file://{root}", str(root)), chosen)] == [
        wanted
    ]
