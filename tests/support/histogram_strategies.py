"""Hypothesis strategies for histograms: definitions of every kind, and histograms valid for
one, then maybe broken (the twin and fast-path tests feed both implementations with them)."""

from __future__ import annotations

from hypothesis import strategies as st

from histograms.buckets import KIND_CODES, layout_for, parameters_for
from histograms.definitions import HistogramDefinition

KINDS = ["exponential", "linear", "boolean", "flag", "count", "enumerated", "categorical"]


@st.composite
def definitions(draw) -> HistogramDefinition:
    kind = draw(st.sampled_from(KINDS))
    low = draw(st.integers(1, 50))
    high = low + draw(st.integers(1, 5000))
    n_buckets = draw(st.integers(3, 60))
    n_values = draw(st.integers(2, 120))
    raw = {"labels": [f"l{i}" for i in range(draw(st.integers(1, 60)))]}
    low, high, bucket_count = parameters_for(kind, raw, n_values, low, high, n_buckets)
    return HistogramDefinition(
        name="H",
        kind=kind,
        low=low,
        high=high,
        bucket_count=bucket_count,
        keyed=draw(st.booleans()),
        buckets=layout_for(kind, low, high, bucket_count),
        symbolic=kind == "enumerated" and draw(st.booleans()),
    )


odd_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.lists(st.integers(0, 3), max_size=3),
)


odd_keys = st.one_of(
    st.text(max_size=4),
    st.text(alphabet="0123456789", min_size=1, max_size=22),
    st.sampled_from(["-1", "+1", "01", " 1", "1.0", "\u0663", "1e2", "", "0"]),
    st.integers(-5, 200),
    st.booleans(),
)


@st.composite
def histograms(draw, definition: HistogramDefinition) -> object:
    """A histogram that is valid for the definition, then maybe broken in one or more ways."""
    if draw(st.integers(0, 30)) == 0:
        return draw(odd_scalars)
    chosen = draw(st.lists(st.sampled_from(definition.buckets), max_size=12, unique=True))
    values: dict = {str(b): draw(st.integers(0, 2**40)) for b in sorted(chosen)}
    hist: dict = {
        "range": [definition.low, definition.high],
        "bucket_count": definition.bucket_count,
        "histogram_type": definition.kind_code,
        "values": values,
    }
    for name in ("sum", "log_sum", "log_sum_squares", "sum_squares_lo", "sum_squares_hi"):
        if draw(st.booleans()):
            hist[name] = draw(
                st.one_of(st.integers(0, 2**40), st.floats(allow_nan=False, allow_infinity=False))
            )
    if definition.symbolic and draw(st.booleans()):  # a client whose constant had another value
        n = draw(st.integers(1, 300))
        hist.update(
            range=[1, n],
            bucket_count=n + 1,
            histogram_type=1,
            values={str(i): 1 for i in range(0, n + 1, 7)},
        )
    for _ in range(draw(st.integers(0, 2))):
        mutation = draw(st.sampled_from(["value_key", "count", "header", "drop", "stat", "extra"]))
        if mutation == "value_key":
            hist["values"] = dict(hist["values"]) if isinstance(hist.get("values"), dict) else {}
            hist["values"][draw(odd_keys)] = draw(st.integers(0, 9))
        elif mutation == "count" and isinstance(hist.get("values"), dict) and hist["values"]:
            key = draw(st.sampled_from(sorted(hist["values"], key=str)))
            hist["values"][key] = draw(odd_scalars)
        elif mutation == "header":
            field = draw(st.sampled_from(["range", "bucket_count", "histogram_type", "values"]))
            hist[field] = draw(
                st.one_of(
                    odd_scalars,
                    st.just([definition.low, definition.high + 1]),
                    st.just(KIND_CODES["linear"]),
                )
            )
        elif mutation == "drop":
            hist.pop(draw(st.sampled_from(sorted(hist, key=repr))), None)
        elif mutation == "stat":
            hist[draw(st.sampled_from(["sum", "log_sum", "sum_squares_hi"]))] = draw(odd_scalars)
        else:
            hist[draw(st.one_of(st.text(max_size=8), st.integers(0, 3)))] = draw(odd_scalars)
    return hist


def typed(result: object) -> object:
    """Make int 1 and float 1.0 (and True) distinguishable when comparing outputs."""
    if isinstance(result, list):
        return [(type(x).__name__, repr(x)) for x in result]
    return result
