"""The MapReduce job script of the aggregates (`python -m mapreduce.job aggregates/job_script.py`).

map: one published record -> key `[submission_date, revision, channel, version, build_id,
reason, application, os, os_version, architecture]`, value `("r", {metric: compact histogram},
{metric: simple measure})` as they are in the record (nothing copied: the hot path).
With the native scanner built (`aggregates._scan`), a record's histograms are read straight from
its text into one array instead (value `("b", (names, lengths), array, {simple})`), and only
the rest of the record goes through orjson; records it does not handle take the general path.
combine and reduce: `("m", {metric#length: [submissions, sum, counts...]})`, elementwise sums. The revision stays in the key so that every
group has exactly one bucket layout per histogram; `aggregates.compute` resolves layouts and
merges revisions that share one. Runs unchanged on the local engine and on Dask.
"""

from orjson import loads

from aggregates.extract import merge_metric_maps, record_dimensions, record_sections, revision_of

try:
    from aggregates._scan import scan
except ImportError:  # not built (no compiler): the general path does everything
    scan = None


def map(key, dims, value, context):
    if scan is not None:
        found = scan(value.encode())
        if found is not None:
            names, lengths, values, rest = found
            record = loads(rest)
            simple = record_sections(record)[1]
            if names or simple:
                group = (dims[5], revision_of(record), *record_dimensions(record, dims))
                context.write(group, ("b", (tuple(names), tuple(lengths)), values, simple))
            return
    record = loads(value)
    if not isinstance(record, dict):
        return
    compact, simple = record_sections(record)
    if compact or simple:
        group = (dims[5], revision_of(record), *record_dimensions(record, dims))
        context.write(group, ("r", compact, simple))


def combine(key, values, context):
    context.write(key, merge_metric_maps(values))


def reduce(key, values, context):
    context.write(key, merge_metric_maps(values))
