"""Sum one histogram's compact arrays per channel and version: the data behind a dashboard plot.

    python -m mapreduce.job mapreduce/examples/histogram_aggregate.py \
        -f mapreduce/examples/histogram_aggregate_filter.json -r 2 -o gc_ms.txt

Reads v1 records (`histograms`) and v4 pings (the parent process's `payload.histograms`).
Edit HISTOGRAM to aggregate another one. A compact histogram is
`[count_0 ... count_{n-1}, sum, log_sum, log_sum_squares, sum_squares_lo, sum_squares_hi]`;
bucket counts add up, and so do the statistics unless one side is missing (-1), which makes
the total missing too. Output per (channel, version):
`["release", "23.0.1"]<TAB>{"histogram": [...], "submissions": n, "skipped": k}`, where
`skipped` counts arrays whose length did not match (a different bucket layout).
"""

from mapreduce.lazyjson import LazyRecord

HISTOGRAM = "GC_MS"
STATISTICS = 5


def add_arrays(total, other):
    """Elementwise sum of two compact arrays of the same length (statistics: -1 is missing)."""
    counts = len(total) - STATISTICS
    out = [a + b for a, b in zip(total[:counts], other[:counts], strict=True)]
    for a, b in zip(total[counts:], other[counts:], strict=True):
        out.append(-1 if a == -1 or b == -1 else a + b)
    return out


def histogram_of(record, name):
    """A v1 record's histogram, or a v4 ping's from the parent process's `payload.histograms`.

    get_path parses only the histogram itself: the record around it is merely scanned.
    """
    if "payload" in record:
        return record.get_path("payload", "histograms", name)
    return record.get_path("histograms", name)


def map(key, dims, value, context):
    histogram = histogram_of(LazyRecord(value), HISTOGRAM)
    if histogram:
        context.write((dims[2], dims[3]), {"histogram": histogram, "submissions": 1, "skipped": 0})


def _merge(values):
    merged = None
    for item in values:
        if merged is None:
            merged = dict(item)
        elif len(item["histogram"]) != len(merged["histogram"]):
            merged["skipped"] += item["submissions"] + item["skipped"]
        else:
            merged["histogram"] = add_arrays(merged["histogram"], item["histogram"])
            merged["submissions"] += item["submissions"]
            merged["skipped"] += item["skipped"]
    return merged


def combine(key, values, context):
    context.write(key, _merge(values))


def reduce(key, values, context):
    context.write(key, _merge(values))
