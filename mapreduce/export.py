"""`python -m mapreduce.export`: write the selected records as Parquet for DuckDB, pandas, Spark.

The output is a Hive-style partitioned dataset: one directory level per dimension of the
filter's source (`reason=idle_daily/appName=Firefox/.../submission_date=20130810/`), so query
engines prune partitions by dimension exactly as the MapReduce planner does. Each row has the
`docId` and the record as JSON text (`json`): pings differ too much in shape for one fixed
column schema, and DuckDB's `json_extract_string(json, '$.info.OS')` (or pandas'
`json.loads`) reads any field. Records are streamed in batches, so memory stays bounded.

Exit status: 0 done, 2 bad usage or configuration (including a non-empty --out).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from mapreduce.records import FilterSource, add_selection_arguments, as_filter, read_text
from pipeline.cli import add_common_arguments, apply_config_flag, setup_logging_from_args
from pipeline.config import load_settings
from pipeline.errors import ConfigError, PipelineError
from pipeline.stores import BlobStore

EXIT_OK, EXIT_USAGE = 0, 2
BATCH_ROWS = 10_000
FORMATS = ("parquet",)


def _schema(dimensions: Sequence[str]):
    import pyarrow as pa

    fields = [pa.field("docId", pa.string()), pa.field("json", pa.string())]
    return pa.schema(fields + [pa.field(name, pa.string()) for name in dimensions])


def _batches(rows: Iterator[tuple[str, dict[str, str], str]], schema) -> Iterator:
    import pyarrow as pa

    columns: dict[str, list[str]] = {name: [] for name in schema.names}
    count = 0
    for key, dims, text in rows:
        columns["docId"].append(key)
        columns["json"].append(text)
        for name, value in dims.items():
            columns[name].append(value)
        count += 1
        if count == BATCH_ROWS:
            yield pa.record_batch(list(columns.values()), schema=schema)
            columns = {name: [] for name in schema.names}
            count = 0
    if count:
        yield pa.record_batch(list(columns.values()), schema=schema)


def export_parquet(
    input_filter: FilterSource, out: str | Path, *, store: BlobStore | str | None = None
) -> int:
    """Write every selected record under `out` (which must be empty or absent); return the count."""
    import pyarrow.dataset as ds

    chosen = as_filter(input_filter)
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError("--out", f"{target} exists and is not an empty directory")
    schema = _schema(chosen.dimensions)
    written = 0

    def counted() -> Iterator:
        nonlocal written
        for batch in _batches(read_text(chosen, store=store), schema):
            written += batch.num_rows
            yield batch

    import pyarrow as pa

    dims = pa.schema([schema.field(name) for name in chosen.dimensions])
    partitioning = ds.partitioning(dims, flavor="hive")
    ds.write_dataset(
        counted(),
        target,
        schema=schema,
        format="parquet",
        partitioning=partitioning,
        basename_template="part-{i}.parquet",
        existing_data_behavior="overwrite_or_ignore",
        max_rows_per_group=BATCH_ROWS * 10,
    )
    return written


def build_parser(published_url: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mapreduce.export",
        description="Write the published records a filter selects as a Hive-partitioned Parquet "
        "dataset (columns: docId, json, and one partition column per dimension).",
        epilog="example, then query with DuckDB:\n"
        "  python -m mapreduce.export -f filter.json --format parquet --out /tmp/pings\n"
        "  duckdb -c \"SELECT appVersion, count(*) FROM read_parquet('/tmp/pings/**/*.parquet',\n"
        '            hive_partitioning=true, hive_types_autocast=false) GROUP BY 1"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_selection_arguments(
        parser,
        published_url,
        filter_help="JSON filter as for mapreduce.job (default: every record of --source)",
        source_help="which tree to export without a filter file",
    )
    parser.add_argument("--format", choices=FORMATS, default="parquet", help="(default: parquet)")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output directory; must be empty or absent"
    )
    add_common_arguments(parser, "WARNING")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        apply_config_flag(argv)
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args = build_parser(settings.published_url).parse_args(argv)
    setup_logging_from_args("mapreduce", args, settings, default_level="WARNING")
    try:
        chosen = as_filter(args.input_filter, args.source)
        count = export_parquet(chosen, args.out, store=args.bucket)
    except (ValueError, PipelineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"exported {count} records to {args.out}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
