"""Count submissions per update channel and operating system.

    python -m mapreduce.job mapreduce/examples/osdistribution.py \
        -f mapreduce/examples/osdistribution_filter.json -o os.txt

Output: `["release", "WINNT"]<TAB>count` (the key is a JSON list: channel, OS).
"""

from mapreduce.lazyjson import LazyRecord


def map(key, dims, value, context):
    channel = dims[2]
    # LazyRecord(value) is loads(value) parsed only as far as it is read: here just `info`.
    info = LazyRecord(value).get("info") or {}
    context.write((channel, str(info.get("OS", "UNKNOWN"))), 1)


def combine(key, values, context):
    context.write(key, sum(values))


def reduce(key, values, context):
    context.write(key, sum(values))
