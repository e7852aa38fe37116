"""Count records per dimension combination.

    python -m mapreduce.job mapreduce/examples/simple_counter.py \
        -f mapreduce/examples/simple_counter_filter.json -o counts.txt

Output: `reason,appName,channel,version,buildId,date<TAB>count`.
"""


def map(key, dims, value, context):
    context.write(",".join(dims), 1)


def combine(key, values, context):
    context.write(key, sum(values))


def reduce(key, values, context):
    context.write(key, sum(values))
