"""Command line: inspect bucket layouts and convert single payloads by hand.

python -m histograms buckets Histograms.json
python -m histograms convert payload.json.gz [--cache DIR] [--base-url URL]
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

from histograms import json_codec
from histograms.convert import IMPLEMENTATION, convert_payload, revision_of
from histograms.definitions import load_definitions
from histograms.errors import DefinitionError, RevisionError
from histograms.revision_cache import RevisionCache
from pipeline.cli import add_common_arguments, apply_config_flag, setup_logging_from_args
from pipeline.config import load_settings


def layouts(definitions) -> dict:
    """The reference form of a55c55edf302.buckets.json (kind as a string code)."""
    return {
        "histograms": {
            name: {
                "bucket_count": d.bucket_count,
                "buckets": list(d.buckets),
                "kind": str(d.kind_code),
                "max": d.high,
                "min": d.low,
            }
            for name, d in definitions.items()
        }
    }


def read_payload(path: Path) -> dict:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    payload = json_codec.loads(data)
    if not isinstance(payload, dict):
        raise ValueError("payload is not a JSON object")
    return payload


def cmd_buckets(args: argparse.Namespace) -> int:
    try:
        definitions = load_definitions(Path(args.file))
    except DefinitionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, reason in definitions.errors:
        print(f"bad definition {name}: {reason}", file=sys.stderr)
    sys.stdout.write(json_codec.dumps(layouts(definitions)) + "\n")
    return 1 if definitions.errors else 0


def cmd_convert(args: argparse.Namespace) -> int:
    try:
        payload = read_payload(Path(args.payload))
    except (OSError, ValueError, EOFError) as exc:
        print(f"error: cannot read payload {args.payload}: {exc}", file=sys.stderr)
        return 2
    revision = revision_of(payload)
    if revision is None:
        print(
            "error: the payload names no Histograms.json revision (info.revision)", file=sys.stderr
        )
        return 2
    cache = RevisionCache(args.cache, base_url=args.base_url, timeout=args.timeout)
    try:
        definitions = cache.get(revision)
    except RevisionError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    result = convert_payload(payload, definitions)
    for name, reason in result.invalid:
        print(f"invalid {name}: {reason}", file=sys.stderr)
    for name in result.unknown:
        print(f"unknown {name}: not defined in {revision}", file=sys.stderr)
    print(
        f"implementation: {IMPLEMENTATION}; invalid: {len(result.invalid)}; unknown: {len(result.unknown)}",
        file=sys.stderr,
    )
    sys.stdout.write(json_codec.dumps(result.payload) + "\n")
    return 1 if result.invalid else 0


def build_parser() -> argparse.ArgumentParser:
    settings = load_settings()
    parser = argparse.ArgumentParser(
        prog="python -m histograms",
        description="Histogram bucket layouts and payload conversion (compact histogram format).",
        epilog="Effective settings:\n" + settings.describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(parser, "WARNING")
    commands = parser.add_subparsers(dest="command", required=True)
    buckets = commands.add_parser(
        "buckets",
        help="print the bucket layout of every histogram in a Histograms.json",
        description='Print {"histograms": {NAME: {kind, min, max, bucket_count, buckets}}}; '
        "bad definitions are listed on stderr (exit status 1).",
    )
    buckets.add_argument("file", help="path of a Histograms.json")
    buckets.set_defaults(func=cmd_buckets)
    convert = commands.add_parser(
        "convert",
        help="validate and convert one payload through the revision cache",
        description="Print the converted payload on stdout; invalid and unknown histograms on stderr. "
        "Exit status: 0 converted, 1 some histograms invalid, 2 unreadable payload, 3 revision unavailable.",
    )
    convert.add_argument("payload", help="payload file, plain or gzip-compressed JSON")
    convert.add_argument(
        "--cache",
        default=settings.histogram_cache,
        help=f"revision cache directory (TELEMETRY_HISTOGRAM_CACHE; default {settings.histogram_cache})",
    )
    convert.add_argument(
        "--base-url",
        default=settings.hg_base_url,
        help=f"Mercurial server revisions are fetched from (TELEMETRY_HG_BASE_URL; default {settings.hg_base_url})",
    )
    convert.add_argument(
        "--timeout", type=float, default=10.0, help="HTTP timeout in seconds (default 10)"
    )
    convert.set_defaults(func=cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    apply_config_flag(argv)
    args = build_parser().parse_args(argv)
    setup_logging_from_args("histograms", args, default_level="WARNING")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
