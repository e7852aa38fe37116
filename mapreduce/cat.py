"""`python -m mapreduce.cat`: print published records as JSON lines, to look at them.

One line per record: {"key": docId, "object": store key, "source": ..., "dimensions": {...},
"record": {...}}. JSON keeps any docId or value intact (tabs and newlines included), so the
output also feeds `jq` and `json.loads` safely. Exit status: 0 done, 2 bad usage or
configuration, 1 a record with --doc-id was asked for and not found.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mapreduce.records import add_selection_arguments, as_filter, dumps, read
from pipeline.cli import add_common_arguments, apply_config_flag, setup_logging_from_args
from pipeline.config import load_settings
from pipeline.errors import ConfigError, PipelineError
from pipeline.layout import SOURCE_DIMENSIONS

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2


def build_parser(published_url: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mapreduce.cat",
        description="Print published records (decompressed, with their dimensions) as JSON "
        "lines. errors/ records also get 'body_text', the raw request body decoded where it "
        "is text.",
        epilog="dimensions per source: "
        + "; ".join(f"{tree}: {', '.join(names)}" for tree, names in SOURCE_DIMENSIONS.items())
        + "\nexamples:\n"
        "  python -m mapreduce.cat --limit 1\n"
        "  python -m mapreduce.cat --source errors --limit 5\n"
        "  python -m mapreduce.cat -f glean.json --doc-id 0a1b...\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_selection_arguments(
        parser,
        published_url,
        filter_help='JSON filter as for mapreduce.job; "source": "namespaces" or "errors" selects '
        "those trees (default: every record of --source)",
        source_help="which tree to read without a filter file (default: telemetry, or the "
        "filter's)",
    )
    parser.add_argument("--doc-id", metavar="ID", help="print only records with this docId")
    parser.add_argument(
        "--limit", type=int, metavar="N", help="stop after N records (default: all)"
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
    if args.limit is not None and args.limit < 0:
        print("error: --limit must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    found = 0
    try:
        chosen = as_filter(args.input_filter, args.source)
        for key, dims, record in read(
            chosen, store=args.bucket, doc_id=args.doc_id, limit=args.limit
        ):
            line = {"key": key, "source": chosen.source, "dimensions": dims, "record": record}
            sys.stdout.write(dumps(line) + "\n")
            found += 1
    except (ValueError, PipelineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        sys.stderr.close()
        return EXIT_OK
    if args.doc_id is not None and not found:
        print(f"error: no record with docId {args.doc_id!r}", file=sys.stderr)
        return EXIT_NOT_FOUND
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
