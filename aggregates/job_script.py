"""The MapReduce job script of the aggregates (`python -m mapreduce.job aggregates/job_script.py`).

map: one published record -> key `[submission_date, revision, channel, version, build_id,
reason, application, os, os_version, architecture]`, value `{metric: [1, sum, counts...]}`.
combine and reduce: elementwise sums per metric. The revision stays in the key so that every
group has exactly one bucket layout per histogram; `aggregates.compute` resolves layouts and
merges revisions that share one. Runs unchanged on the local engine and on Dask.
"""

from orjson import loads

from aggregates.extract import merge_metric_maps, record_dimensions, record_metrics, revision_of


def map(key, dims, value, context):
    record = loads(value)
    if not isinstance(record, dict):
        return
    metrics = dict(record_metrics(record))
    if metrics:
        group = (dims[5], revision_of(record), *record_dimensions(record, dims))
        context.write(group, metrics)


def combine(key, values, context):
    context.write(key, merge_metric_maps(values))


def reduce(key, values, context):
    context.write(key, merge_metric_maps(values))
