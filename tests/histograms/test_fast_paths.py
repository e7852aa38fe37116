"""The Cython loop's shortcuts (direct dict walks, cached key objects) agree with the twin.

The property test in test_histograms_twin.py builds its dicts in Python; these feed the same
histograms as the JSON parser builds them (its larger dicts use another table layout), with
deleted entries (holes in the table), and with keys the shortcuts must hand back to the
ordinary lookups.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from histograms import _slow, convert
from histograms.buckets import layout_for
from histograms.definitions import HistogramDefinition
from histograms.spec import build_spec

if convert.IMPLEMENTATION != "cython":
    pytest.skip("Cython extension histograms._fast is not built", allow_module_level=True)
from histograms import _fast  # noqa: E402
from tests.support.histogram_strategies import definitions, histograms, typed  # noqa: E402

LINEAR = HistogramDefinition("H", "linear", 1, 100, 30, False, layout_for("linear", 1, 100, 30))


def both(hist: object, spec: tuple) -> tuple[object, object]:
    return typed(_fast.convert_one(hist, spec)), typed(_slow.convert_one(hist, spec))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_parser_built_histograms_with_deleted_entries_agree(data):
    definition = data.draw(definitions())
    spec = build_spec(definition)
    hist = data.draw(histograms(definition))
    try:
        hist = orjson.loads(orjson.dumps(hist))  # the parser's own dict layout
    except TypeError:
        return  # keys or numbers JSON cannot carry: covered by the twin property test
    if isinstance(hist, dict):
        for name in data.draw(st.lists(st.sampled_from(sorted(hist) or ["x"]), max_size=3)):
            hist.pop(name, None)
        values = hist.get("values")
        if isinstance(values, dict) and values:
            for key in data.draw(st.lists(st.sampled_from(sorted(values)), max_size=4)):
                values.pop(key, None)
    fast, slow = both(hist, spec)
    assert fast == slow


def test_large_parsed_values_dict_with_holes_converts_like_the_twin():
    spec = build_spec(LINEAR)
    values = {str(bound): i + 1 for i, bound in enumerate(LINEAR.buckets)}
    hist = orjson.loads(orjson.dumps({"range": [1, 100], "bucket_count": 30, "values": values}))
    for bound in LINEAR.buckets[::3]:
        del hist["values"][str(bound)]
    fast, slow = both(hist, spec)
    assert fast == slow
    assert isinstance(_fast.convert_one(hist, spec), list)
    assert _fast.convert_one(hist, spec)[0] == 0  # bucket 0 was deleted


class NoisyKey(str):
    """A str subclass: never taken by the fast paths, and it runs Python code when hashed."""

    def __hash__(self) -> int:
        return str.__hash__(self)


def test_keys_that_run_python_code_take_the_ordinary_path():
    spec = build_spec(LINEAR)
    bound = str(LINEAR.buckets[5])
    values = {str(b): 1 for b in LINEAR.buckets[:5]}
    values[NoisyKey(bound)] = 7
    values.update({str(b): 2 for b in LINEAR.buckets[6:12]})
    hist = {NoisyKey("range"): [1, 100], "bucket_count": 30, "values": values, "sum": 3}
    fast, slow = both(hist, spec)
    assert fast == slow
    assert _fast.convert_one(hist, spec)[5] == 7


def test_the_same_key_text_in_new_objects_is_still_recognised():
    """The key-object cache must fall back to comparing text when the objects differ."""
    spec = build_spec(LINEAR)
    first = orjson.loads(b'{"bucket_count": 30, "values": {"1": 2}, "sum": 5}')
    second = {"".join(["bucket_", "count"]): 31, "".join(["val", "ues"]): {"1": 2}}
    assert both(first, spec)[0] == both(first, spec)[1]
    fast, slow = both(second, spec)
    assert fast == slow and isinstance(_fast.convert_one(second, spec), str)
