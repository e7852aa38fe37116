"""Pure parts of the aggregates: summing with bad or changed arrays, percentiles, the
regression hint."""

from __future__ import annotations

from aggregates import stats
from aggregates.extract import base_name, merge_metric_maps, record_sections


def test_merge_sums_and_keeps_other_layouts_and_junk_apart():
    good = [1, 2, 3, 10, -1, -1, -1, -1]  # 3 buckets, sum 10
    other = [1, 1, 1, 1, 7, -1, -1, -1, -1]  # 4 buckets: a changed layout
    junk = [1, "x", 3, 10, -1, -1, -1, -1]
    records = [
        ("r", {"A": good, "B": junk, "C": 5}, {"SIMPLE_MEASURES_UPTIME": 3}),
        ("r", {"A": good, "B": good}, {"SIMPLE_MEASURES_UPTIME": 4}),
        ("r", {"A": other}, {}),
    ]
    kind, merged = merge_metric_maps(iter(records))
    assert kind == "m"
    assert merged["A#5"] == [2, 20, 2, 4, 6]
    assert merged["A#6"] == [1, 7, 1, 1, 1, 1]
    assert merged["B#5"] == [1, 10, 1, 2, 3]  # the junk array is left out, not the good one
    assert not any(key.startswith("C#") for key in merged)
    uptime = merged["SIMPLE_MEASURES_UPTIME#52"]
    assert uptime[:2] == [2, 7] and sum(uptime[2:]) == 2
    # merging merged values again (the reducer) gives the same sums
    _, again = merge_metric_maps(iter([("m", merged), ("m", {"A#5": [1, 1, 1, 1, 1]})]))
    assert again["A#5"] == [3, 21, 3, 5, 7]


def test_sections_name_keyed_and_process_histograms():
    record = {
        "payload": {
            "histograms": {"A": [1]},
            "keyedHistograms": {"K": {"x": [2]}},
            "processes": {"content": {"histograms": {"A": [3]}, "keyedHistograms": {"K": {"y": [4]}}},
                          "parent": {"histograms": {"P": [5]}}},
            "simpleMeasurements": {"main": 7, "js": {"x": 1}, "flag": True},
        }
    }  # fmt: skip
    compact, simple = record_sections(record)
    assert compact == {"A": [1], "K[x]": [2], "content/A": [3], "content/K[y]": [4], "P": [5]}
    assert simple == {"SIMPLE_MEASURES_MAIN": 7}


def test_percentiles_interpolate_inside_the_bucket():
    buckets, counts = [0, 10, 20, 30], [0, 10, 10, 0]
    assert stats.percentile(buckets, counts, 50) == 20.0
    assert stats.percentile(buckets, counts, 25) == 15.0
    assert stats.percentile(buckets, [0, 0, 0, 4], 50) == 35.0  # overflow as wide as the last
    assert stats.percentile(buckets, [0, 0, 0, 0], 50) is None
    assert stats.mean(buckets, counts, 300) == 15.0


def test_regression_hint_needs_a_shift_beyond_the_median_error():
    buckets = list(range(0, 200, 10))
    before = [50] * 20  # spread out: the median is known only as well as n allows
    after = [0, 0] + [50] * 18  # the same shape, two buckets up
    few, many = 4, 10_000
    median = stats.percentile
    se = stats.median_standard_error
    point = lambda c, n: (median(buckets, c, 50), se(buckets, c, n))  # noqa: E731
    assert stats.regression_hint(point(before, many), point(after, many))["shift"] == 10.0
    assert stats.regression_hint(point(before, few), point(after, few)) is None
    assert stats.regression_hint(point(before, many), point(before, many)) is None


def test_keys_with_any_character_keep_their_metric():
    name = "content/K[a#b,c/d[e]"
    assert base_name(name) == "K" and base_name("K") == "K" and base_name("gpu/X") == "X"
    _, merged = merge_metric_maps(iter([("r", {name: [1, 2, 3, -1, -1, -1, -1]}, {})]))
    assert merged == {f"{name}#4": [1, 3, 1, 2]}
