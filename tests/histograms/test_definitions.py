"""Histograms.json parsing: 2013 C++ expressions, modern kinds, one error per bad definition."""

from __future__ import annotations

import json

import pytest

from histograms.definitions import (
    DefinitionError,
    ExpressionError,
    evaluate_number,
    load_definitions,
)


def load(table: dict):
    return load_definitions(json.dumps(table).encode())


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("80 + 1", 81),
        ("32 * 1024", 32768),
        ("16 * 1024 * 1024", 16777216),
        ("10 * 1000", 10000),
        ("3000", 3000),
        (" (7 - 1) / 4 ", 1),
    ],
)
def test_cpp_arithmetic_evaluates_like_cpp(text, value):
    assert evaluate_number(text) == (value, False)


def test_known_cpp_constants_are_substituted_and_marked():
    assert evaluate_number("mozilla::StartupTimeline::MAX_EVENT_ID") == (12, True)
    assert evaluate_number("JS::gcreason::NUM_TELEMETRY_REASONS") == (100, True)


@pytest.mark.parametrize(
    "text", ["nsFoo::BAR", "__import__('os')", "1 +", "2 ** 10", "[1]", "1 / 0"]
)
def test_anything_but_integer_arithmetic_is_refused(text):
    with pytest.raises(ExpressionError):
        evaluate_number(text)


def test_old_file_with_expressions_parses_completely(shared_fixtures):
    definitions = load_definitions(
        shared_fixtures / "histograms/releases/mozilla-release/a55c55edf302/Histograms.json"
    )
    assert len(definitions) == 524 and definitions.errors == []
    popup = definitions["POPUP_NOTIFICATION_MAINACTION_TRIGGERED_MS"]
    assert (popup.kind, popup.high, popup.bucket_count) == ("linear", 2000, 81)
    assert definitions["MEMORY_RESIDENT"].low == 32 * 1024
    gc_reason = definitions["GC_REASON_2"]
    assert (gc_reason.high, gc_reason.bucket_count, gc_reason.symbolic) == (100, 101, True)


def test_modern_file_parses_with_all_kinds(shared_fixtures):
    definitions = load_definitions(
        shared_fixtures / "histograms/enterprise-firefox-72a855fe/Histograms.json"
    )
    assert len(definitions) == 293 and definitions.errors == []
    assert {d.kind for d in definitions.values()} == {
        "exponential",
        "linear",
        "boolean",
        "enumerated",
        "categorical",
        "count",
    }
    assert sum(d.keyed for d in definitions.values()) == 56


def test_categorical_gets_at_least_fifty_buckets_and_more_with_more_labels():
    definitions = load(
        {
            "FEW": {"kind": "categorical", "labels": ["a", "b"]},
            "MANY": {"kind": "categorical", "labels": [f"l{i}" for i in range(60)]},
            "OVERRIDE": {"kind": "categorical", "labels": ["a"], "n_values": 70},
        }
    )
    assert definitions["FEW"].bucket_count == 51 and definitions["FEW"].labels == ("a", "b")
    assert definitions["MANY"].high == 60
    assert definitions["OVERRIDE"].bucket_count == 71
    assert definitions["FEW"].kind_code == 5


def test_boolean_flag_and_count_share_the_three_bucket_layout():
    definitions = load(
        {"B": {"kind": "boolean"}, "F": {"kind": "flag"}, "C": {"kind": "count", "keyed": True}}
    )
    for name, code in (("B", 2), ("F", 3), ("C", 4)):
        assert definitions[name].buckets == (0, 1, 2) and definitions[name].kind_code == code
    assert definitions["C"].keyed is True


def test_each_bad_definition_is_reported_and_the_rest_stay_usable():
    definitions = load(
        {
            "OK": {"kind": "exponential", "high": 1000, "n_buckets": 10},
            "NO_KIND": {"high": 3},
            "ODD_KIND": {"kind": "gaussian"},
            "NO_HIGH": {"kind": "exponential", "n_buckets": 10},
            "BAD_RANGE": {"kind": "linear", "low": 50, "high": 10, "n_buckets": 5},
            "FEW_BUCKETS": {"kind": "linear", "high": 10, "n_buckets": 2},
            "BAD_EXPR": {"kind": "enumerated", "n_values": "nsFoo::COUNT"},
            "NO_LABELS": {"kind": "categorical"},
            "BAD_KEYED": {"kind": "flag", "keyed": "yes"},
            "NOT_OBJECT": 5,
            "ONE_VALUE": {"kind": "enumerated", "n_values": 1},
        }
    )
    assert list(definitions) == ["OK"]
    reasons = dict(definitions.errors)
    assert set(reasons) == {
        "NO_KIND",
        "ODD_KIND",
        "NO_HIGH",
        "BAD_RANGE",
        "FEW_BUCKETS",
        "BAD_EXPR",
        "NO_LABELS",
        "BAD_KEYED",
        "NOT_OBJECT",
        "ONE_VALUE",
    }
    assert "unknown kind" in reasons["ODD_KIND"]
    assert "high" in reasons["NO_HIGH"]
    assert "nsFoo::COUNT" in reasons["BAD_EXPR"]
    assert "labels" in reasons["NO_LABELS"]


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_unusable_file_raises_definition_error(content):
    with pytest.raises(DefinitionError):
        load_definitions(content)


def test_missing_file_raises_definition_error(tmp_path):
    with pytest.raises(DefinitionError, match="cannot read"):
        load_definitions(tmp_path / "nope.json")
