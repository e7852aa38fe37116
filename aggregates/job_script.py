"""The MapReduce job script of the aggregates (`python -m mapreduce.job aggregates/job_script.py`).

map: one published record -> key `[submission_date, revision, channel, version, build_id,
reason, application, os, os_version, architecture]`, value `("r", {metric: compact histogram},
{metric: simple measure})` as they are in the record (nothing copied: the hot path).
combine and reduce: `("m", {metric#length: [submissions, sum, counts...]})`, elementwise sums. The revision stays in the key so that every
group has exactly one bucket layout per histogram; `aggregates.compute` resolves layouts and
merges revisions that share one. Runs unchanged on the local engine and on Dask.
"""

from orjson import loads

from aggregates.extract import merge_metric_maps, record_dimensions, record_sections, revision_of


def map(key, dims, value, context):
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
