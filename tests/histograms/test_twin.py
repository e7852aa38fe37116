"""The Cython hot loop and its pure-Python twin must agree on every input, valid or not."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from histograms import _slow, convert
from histograms.definitions import HistogramDefinition
from histograms.spec import build_spec

if convert.IMPLEMENTATION != "cython":
    pytest.skip(
        "Cython extension histograms._fast is not built (run `make setup` or "
        "`.venv/bin/python setup.py build_ext --inplace`); nothing to compare the twin with",
        allow_module_level=True,
    )
from histograms import _fast  # noqa: E402
from histograms.buckets import layout_for  # noqa: E402
from tests.support.histogram_strategies import (  # noqa: E402
    definitions,
    histograms,
    odd_scalars,
    typed,
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_and_slow_agree_on_single_histograms(data):
    definition = data.draw(definitions())
    spec = build_spec(definition)
    hist = data.draw(histograms(definition))
    assert typed(_fast.convert_one(hist, spec)) == typed(_slow.convert_one(hist, spec))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_and_slow_agree_on_whole_histogram_sections(data):
    defined = data.draw(st.lists(definitions(), min_size=1, max_size=4))
    specs = {f"H{i}": build_spec(d) for i, d in enumerate(defined)}
    section: dict = {}
    for i, definition in enumerate(defined):
        name = data.draw(st.sampled_from([f"H{i}", f"STARTUP_H{i}"]))
        section[name] = data.draw(histograms(definition))
    section.update(
        {
            name: {}
            for name in data.draw(
                st.lists(st.sampled_from(["OTHER", "STARTUP_", "STARTUP_X"]), max_size=2)
            )
        }
    )
    fast = _fast.convert_histograms(section, specs)
    slow = _slow.convert_histograms(section, specs)
    assert {k: typed(v) for k, v in fast[0].items()} == {k: typed(v) for k, v in slow[0].items()}
    assert fast[1:] == slow[1:]


@given(odd_scalars)
def test_fast_and_slow_agree_when_the_section_is_not_an_object(section):
    assert _fast.convert_histograms(section, {}) == _slow.convert_histograms(section, {})


def test_generated_histograms_include_both_outcomes():
    """Guard against a generator that only ever produces valid (or only invalid) histograms."""
    definition = HistogramDefinition(
        "H", "linear", 1, 10, 11, False, layout_for("linear", 1, 10, 11)
    )
    spec = build_spec(definition)
    valid = {"range": [1, 10], "bucket_count": 11, "histogram_type": 1, "values": {"3": 4}}
    assert (
        _fast.convert_one(valid, spec)
        == _slow.convert_one(valid, spec)
        == [0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, -1]
    )
    broken = dict(valid, values={"3": -4})
    assert isinstance(_fast.convert_one(broken, spec), str)


def _as_text(draw, section: dict) -> bytes:
    """The section as JSON text in one of the ways a client might write it."""
    style = draw(st.sampled_from(["compact", "spaced", "indented", "ascii"]))
    if style == "compact":
        return json.dumps(section, separators=(",", ":"), ensure_ascii=False).encode()
    if style == "spaced":
        return json.dumps(section, ensure_ascii=False).encode()
    if style == "indented":
        return json.dumps(section, indent=1, ensure_ascii=False).encode()
    return json.dumps(section).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_and_slow_agree_on_sections_read_from_json_text(data):
    """The compiled reader of the histograms section as text (split_payload/convert_split)
    gives what parsing the whole document and converting the dicts gives, byte for byte."""
    defined = data.draw(st.lists(definitions(), min_size=1, max_size=4))
    specs = {f"H{i}": build_spec(d) for i, d in enumerate(defined)}
    section: dict = {}
    for i, definition in enumerate(defined):
        name = data.draw(st.sampled_from([f"H{i}", f"STARTUP_H{i}"]))
        section[name] = data.draw(histograms(definition))
    for name in data.draw(st.lists(st.sampled_from(["OTHER", "STARTUP_X", "é"]), max_size=2)):
        section[name] = {"values": {"0": 1}}
    text = _as_text(data.draw, section)
    doc = b'{"ver":1,"simpleMeasurements":{"a":[1,"}"]},"histograms":' + text + b',"info":{}}'
    results = []
    for impl in (_fast, _slow):
        split = convert.split_payload(doc, impl)
        if split is None:
            results.append(None)
            continue
        assert split.payload == {
            "ver": 1,
            "simpleMeasurements": {"a": [1, "}"]},
            "histograms": {},
            "info": {},
        }
        results.append(split.section.convert(specs, orjson.loads, orjson.dumps))
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        assert results == [None, None]
        return
    converted, invalid, unknown = _slow.convert_histograms(parsed, specs)
    expected = (orjson.dumps(converted), invalid, unknown)
    if all(32 <= ord(c) < 127 and c not in '"\\' for c in "".join(section)):
        assert results == [expected, expected]
    else:  # names the text reader does not take: the general path converts those
        assert results == [None, None]


@pytest.mark.parametrize(
    "doc",
    [
        b'{"histograms":{},"histograms":{}}',
        b'{"histogr\\u0061ms":{},"histograms":{}}',
        b'{"ver":1,"histograms":{"A":{}}} x',
        b'{"ver":1,"histograms":{"A":{}}}}',
        b'{"ver":1,"histograms":[]}',
        b'{"payload":{},"histograms":{}}',
        b'["histograms",{}]',
        b'{"a":"\\"histograms\\":{}","b":1}',
        b'{"a":1,"histograms":{"A":{"values":{"0":1}}},"b":tru}',
    ],
)
def test_split_payload_leaves_unusual_documents_to_the_general_path(doc):
    assert convert.split_payload(doc, _fast) is None
    assert convert.split_payload(doc, _slow) is None


def test_floats_written_another_way_come_out_as_orjson_writes_them():
    """A statistic like `1.50` is read as text; the output must still be orjson's `1.5`."""
    definition = HistogramDefinition(
        "H", "linear", 1, 10, 11, False, layout_for("linear", 1, 10, 11)
    )
    specs = {"H": build_spec(definition), "G": build_spec(definition)}
    text = (
        b'{"H":{"range":[1,10],"bucket_count":11,"histogram_type":1,"values":{"3":4},'
        b'"sum":1.50,"log_sum":0.30000000000000000001,"log_sum_squares":-0.0},'
        b'"G":{"values":{"1":2},"sum":2.25}}'
    )
    doc = b'{"histograms":' + text + b"}"
    converted = _slow.convert_histograms(orjson.loads(text), specs)
    expected = (orjson.dumps(converted[0]), [], [])
    for impl in (_fast, _slow):
        split = convert.split_payload(doc, impl)
        assert split.section.convert(specs, orjson.loads, orjson.dumps) == expected
    assert b"1.5,0.3,-0.0,-1,-1]" in expected[0] and b",2.25,-1," in expected[0]


@pytest.mark.parametrize("repeat", [None, "N7", "N4999"])
def test_sections_with_thousands_of_names_and_a_repeated_one(repeat):
    """More names than the compiled reader's name table holds, and a name met twice (the
    dict keeps the last histogram at the first one's place): still parse-then-convert."""
    definition = HistogramDefinition("N", "flag", 1, 2, 3, False, layout_for("flag", 1, 2, 3))
    specs = {f"N{i}": build_spec(definition) for i in range(0, 6000, 3)}
    parts = [f'"N{i}":{{"values":{{"0":{i},"1":0}},"sum":{i}}}' for i in range(6000)]
    if repeat:
        parts.append(f'"{repeat}":{{"values":{{"1":5}}}}')
    text = ("{" + ",".join(parts) + "}").encode()
    converted, invalid, unknown = _slow.convert_histograms(orjson.loads(text), specs)
    expected = (orjson.dumps(converted), invalid, unknown)
    for _ in range(2):  # the second time the table starts full
        for impl in (_fast, _slow):
            split = convert.split_payload(b'{"histograms":' + text + b"}", impl)
            assert split.section.convert(specs, orjson.loads, orjson.dumps) == expected
