"""`python -m aggregates`: compute the aggregates behind the /telemetry dashboards.

    python -m aggregates job --output-dir DIR              # what the scheduled job runs
    python -m aggregates job --output-dir DIR --from 2026-12-01 --to 2026-12-05
    python -m aggregates show DIR/days/20261206.json.gz    # rows of a day file, readable

Exit status: 0 done, 1 the computation failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.cli import add_common_arguments, apply_config_flag, setup_logging_from_args
from pipeline.config import load_settings
from pipeline.errors import ConfigError, PipelineError
from pipeline.system_jobs import AGGREGATES_JOB, date_range


def build_parser() -> argparse.ArgumentParser:
    settings = load_settings()
    parser = argparse.ArgumentParser(
        prog="python -m aggregates",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"effective settings:\n  TELEMETRY_PUBLISHED_URL={settings.published_url}\n"
        f"  TELEMETRY_PUBLIC_URL={settings.public_url}\n"
        f"  TELEMETRY_HISTOGRAM_CACHE={settings.histogram_cache}",
    )
    add_common_arguments(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    job = commands.add_parser(
        "job",
        help="compute pending (or the given) submission dates into --output-dir",
        description="Compute every submission date whose published data changed since its "
        "aggregates were made, has none yet, or is covered by a newer rerun request; or "
        "exactly --from..--to. Writes days/<YYYYMMDD>.json.gz and index.json.",
    )
    job.add_argument(
        "--output-dir", required=True, help="where the files go (the job's OUTPUT_DIR)"
    )
    job.add_argument(
        "--job-name",
        default=os.environ.get("JOB_NAME", AGGREGATES_JOB),  # the job contract, not a setting
        help="whose published index.json to continue (default: $JOB_NAME or %(default)s)",
    )
    job.add_argument("--from", dest="first", help="first submission date to recompute")
    job.add_argument("--to", dest="last", help="last submission date (default: --from)")
    job.add_argument(
        "--engine", choices=("local", "dask"), default="local", help="MapReduce engine"
    )
    job.add_argument("--scheduler", help="with --engine dask: an existing scheduler's address")
    job.add_argument("-m", "--num-mappers", type=int, default=None, help="default: CPU count")
    show = commands.add_parser("show", help="print the rows of a day file")
    show.add_argument("path")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        apply_config_flag(argv)
        args = build_parser().parse_args(argv)
        setup_logging_from_args("aggregates", args)
        if args.command == "show":
            import json

            from aggregates.dayfile import decode_day, iter_rows

            for row in iter_rows(decode_day(Path(args.path).read_bytes())):
                row["layout"] = row["layout"]["kind"]
                print(json.dumps(row))
            return 0
        from aggregates import jobrun

        dates = date_range(args.first, args.last or args.first) if args.first else None
        if args.last and not args.first:
            raise ValueError("--to needs --from")
        done = jobrun.run(
            load_settings(),
            Path(args.output_dir),
            args.job_name,
            dates,
            engine=args.engine,
            scheduler=args.scheduler,
            mappers=args.num_mappers,
        )
        print(f"aggregated {len(done)} date(s): {' '.join(done) or '(none pending)'}")
        return 0
    except (ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (PipelineError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
