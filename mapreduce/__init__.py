"""MapReduce over published telemetry: `python -m mapreduce.job SCRIPT [flags]`.

Modules, in the order a job meets them:
- `script`: the job-script contract (map/combine/reduce/setup_reduce, `Context.write`);
- `planner`: list what the filter selects (pruned) and split it across mappers by size;
- `fetch`, `reader`: get a file (in place, cached, or downloaded) and stream its records;
- `shuffle`: canonical keys, stable partitions, sorted spill runs, bounded merge;
- `tasks`: one map task and one reduce task, shared by every engine;
- `runner`: the Engine interface and JobSummary; `local` and `dask_runner` implement it;
- `job`: the command line; `synthetic`: published-layout test and benchmark data;
- `records`: `read(filter)`, records parsed one by one for notebooks; `cat`: its command line;
- `export`: selected records written as Parquet for DuckDB, pandas and Spark.
"""

from mapreduce.records import read

__all__ = ["read"]
