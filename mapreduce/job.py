"""`python -m mapreduce.job SCRIPT`: run a MapReduce job script over published data.

Flags follow the original telemetry-server `job.py`; `--engine`, `--scheduler`, `--strict` and
the progress bar are new. Exit status: 0 done, 1 the job script raised, 2 bad usage or
configuration, 3 bad input data under --strict, 4 a mapper/reducer process or the cluster failed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from mapreduce import progress as progress_bars
from mapreduce.errors import BadInputData, EngineFailure, JobScriptFailed, JobScriptInvalid
from mapreduce.output import FORMATTERS
from mapreduce.planner import list_inputs, make_plan
from mapreduce.runner import Engine, JobSummary
from mapreduce.script import load_job_script
from mapreduce.shuffle import DEFAULT_SPILL_RECORDS
from mapreduce.tasks import StoreOpener, TaskSettings
from pipeline.cli import add_common_arguments, apply_config_flag, setup_logging_from_args
from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError, PipelineError
from pipeline.layout import InputFilter, LayoutError
from pipeline.stores import BlobStore, open_store
from pipeline.stores.local import LocalStore

log = logging.getLogger("mapreduce.job")

EXIT_OK, EXIT_SCRIPT, EXIT_USAGE, EXIT_BAD_DATA, EXIT_ENGINE = 0, 1, 2, 3, 4


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    default_work = os.path.join(settings.data_dir, "mapreduce")
    parser = argparse.ArgumentParser(
        prog="python -m mapreduce.job",
        description=(
            "Run a MapReduce job script over published telemetry.\n\n"
            "The script defines map(key, dims, value, context) and optionally\n"
            "reduce(key, values, context), combine(key, values, context) and\n"
            "setup_reduce(context); output is one key<TAB>value line per\n"
            "context.write(key, value)."
        ),
        epilog=(
            "exit status: 0 done, 1 the job script raised, 2 usage/configuration error,\n"
            "3 bad input data with --strict, 4 a worker process or the cluster failed.\n\n"
            "effective settings (from defaults, TELEMETRY_CONFIG and the environment):\n"
            f"  TELEMETRY_DATA_DIR={settings.data_dir}\n"
            f"  TELEMETRY_PUBLISHED_URL={settings.published_url}\n"
            f"  TELEMETRY_S3_ENDPOINT_URL={settings.s3_endpoint_url or '(unset: AWS)'}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "job_script", help="the Python file defining map() and optionally reduce() etc."
    )
    parser.add_argument(
        "-f",
        "--input-filter",
        metavar="FILE",
        help="JSON filter in the shape of telemetry_schema.json selecting the partitions to read; "
        '"source": "namespaces" or "errors" selects those trees instead (default: every '
        "published telemetry partition)",
    )
    parser.add_argument(
        "-m",
        "--num-mappers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="mapper processes (Dask: map tasks); files are split across them by size (default: %(default)s)",
    )
    parser.add_argument(
        "-r",
        "--num-reducers",
        type=int,
        default=1,
        metavar="N",
        help="reduce partitions; keys are assigned by a stable hash (default: %(default)s)",
    )
    parser.add_argument(
        "-d",
        "--data-dir",
        metavar="DIR",
        help="local copy of published files: downloads from a remote --bucket are cached here, "
        "and --local-only reads only what is here (default: WORK_DIR/cache)",
    )
    parser.add_argument(
        "-w",
        "--work-dir",
        metavar="DIR",
        default=default_work,
        help="spill files, the download cache (unless -d) and profiles (default: %(default)s)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default="-",
        help="where the key<TAB>value lines go, written atomically; '-' is stdout (default: %(default)s)",
    )
    parser.add_argument(
        "--output-format",
        choices=sorted(FORMATTERS),
        default="tsv",
        help="tsv: key<TAB>value lines as in 2013 (ambiguous if a key or value holds a tab or "
        "newline); jsonl: one JSON [key, value] array per line, safe for anything "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "-b",
        "--bucket",
        metavar="URL",
        default=settings.published_url,
        help="store URL of the published data, file:// or s3://bucket/prefix "
        "(default: TELEMETRY_PUBLISHED_URL = %(default)s)",
    )
    parser.add_argument(
        "-l",
        "--local-only",
        action="store_true",
        help="do not contact the store: read only the matching files already in --data-dir",
    )
    parser.add_argument(
        "-X",
        "--delete-data",
        action="store_true",
        help="delete each file from --data-dir once it is mapped (files read in place from a "
        "file:// store are never deleted)",
    )
    parser.add_argument(
        "-p",
        "--profile",
        action="store_true",
        help="run every mapper and reducer under cProfile; stats go to WORK_DIR/profiles/",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "dask"),
        default="local",
        help="local: forked processes on this machine; dask: tasks on a dask.distributed cluster "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --engine dask: address of an existing scheduler (tcp://host:port); without it "
        "a LocalCluster of --num-mappers single-threaded worker processes is started",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on the first corrupt file or unparsable line instead of skipping and reporting it",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars over bytes mapped and keys reduced (default: only when stderr is a terminal)",
    )
    parser.add_argument(
        "--spill-records",
        type=int,
        default=DEFAULT_SPILL_RECORDS,
        metavar="N",
        help="map output records a mapper buffers before sorting, combining and spilling them; "
        "bounds mapper memory (default: %(default)s)",
    )
    add_common_arguments(parser, "WARNING")
    return parser


def open_input_store(args: argparse.Namespace, settings: Settings) -> BlobStore:
    if args.local_only:
        return LocalStore(f"file://{args.data_dir}", args.data_dir, setting="--data-dir")
    return open_store(args.bucket, setting="--bucket", endpoint_url=settings.s3_endpoint_url)


def make_runner(args: argparse.Namespace) -> Engine:
    profile_dir = os.path.join(args.work_dir, "profiles") if args.profile else None
    show = progress_bars.wanted(args.progress)
    if args.engine == "dask":
        try:
            import dask.distributed  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "--engine", "dask is not installed: pip install 'telemetry-pipeline[dask]'"
            ) from exc
        from mapreduce.dask_runner import DaskEngine

        return DaskEngine(
            scheduler=args.scheduler,
            workers=args.num_mappers,
            show_progress=show,
            profile_dir=profile_dir,
        )
    from mapreduce.local import LocalEngine

    return LocalEngine(work_dir=args.work_dir, show_progress=show, profile_dir=profile_dir)


@contextlib.contextmanager
def output_stream(target: str) -> Iterator[BinaryIO]:
    """stdout, or a temporary file renamed over `target` only when the job succeeds."""
    if target == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(partial, "wb") as out:
            yield out
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()


def run_job(
    args: argparse.Namespace,
    settings: Settings,
    store: BlobStore | None = None,
    store_opener: Callable[[], BlobStore] | None = None,
) -> JobSummary:
    """Plan and run one job from parsed arguments; `store`/`store_opener` let tests instrument I/O."""
    if args.num_mappers < 1 or args.num_reducers < 1:
        raise ConfigError("--num-mappers/--num-reducers", "must be at least 1")
    if args.scheduler and args.engine != "dask":
        raise ConfigError("--scheduler", "only applies with --engine dask")
    args.data_dir = args.data_dir or os.path.join(args.work_dir, "cache")
    script = load_job_script(args.job_script)
    input_filter = (
        InputFilter.load(args.input_filter) if args.input_filter else InputFilter.everything()
    )
    store = store or open_input_store(args, settings)
    files = list_inputs(store, input_filter)
    plan = make_plan(files, args.num_mappers, 0 if script.map_only else args.num_reducers)
    print(plan.describe(), file=sys.stderr, flush=True)
    if store_opener is None and not args.local_only:
        store_opener = StoreOpener(args.bucket, settings.s3_endpoint_url)
    task_settings = TaskSettings(
        script=script,
        reducers=plan.reducers or 1,
        data_dir=os.path.abspath(args.data_dir),
        local_only=args.local_only,
        delete_data=args.delete_data,
        strict=args.strict,
        profile=args.profile,
        spill_records=args.spill_records,
        store_opener=store_opener,
        output_format=args.output_format,
    )
    runner = make_runner(args)
    with output_stream(args.output) as out:
        summary = runner.run(plan, task_settings, out)
    print(summary.describe(), file=sys.stderr, flush=True)
    return summary


def main(argv: Sequence[str] | None = None, **hooks) -> int:
    """Entry point; returns the exit status (see the module docstring)."""
    try:
        apply_config_flag(argv)
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args = build_parser(settings).parse_args(argv)
    setup_logging_from_args("mapreduce", args, settings, default_level="WARNING")
    try:
        run_job(args, settings, **hooks)
    except JobScriptFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SCRIPT
    except BadInputData as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_DATA
    except EngineFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ENGINE
    except (JobScriptInvalid, ConfigError, LayoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ENGINE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
