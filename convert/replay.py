"""`python -m convert replay --reason R`: run error records through conversion again.

After a fix (a revision mirror added, a doc type allowed, a bug fixed) the records that failed
for reason R are still in `errors/R/<YYYYMMDD>/<id>.lz4`, each line holding the raw record.
Replay rebuilds a batch from one error object's records and converts it like any batch: what
converts now is published (or published unvalidated, or parked, as for new records), what
still fails is written to the error partition again under the replay's id, and then the error
object is deleted.

Idempotent: the replay of an error object is named after a hash of its content, so running
again after a crash rewrites the same outputs (its docIds are claimed under that name, so they
are not duplicates of themselves), and running again after success finds only the records that
still fail. Records kept as metadata only (duplicates) and corrupt-batch tails hold no single
record to convert and are left where they are. Replayed outcomes are counted in the stats under
the source `convert_replay`, so the original counts are not doubled.
"""

from __future__ import annotations

import argparse
import base64
import collections
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import sys

import lz4.frame
from tqdm import tqdm

from convert import outcomes as oc
from convert.batch import BatchMessage, BatchProcessor
from pipeline.cli import add_common_arguments, setup_logging_from_args
from pipeline.config import Settings
from pipeline.errors import ObjectNotFound
from pipeline.layout import ERRORS_PREFIX
from pipeline.outcomes import SOURCE_CONVERT_REPLAY
from pipeline.records import encode_record
from pipeline.stores.base import BlobStore

log = logging.getLogger(__name__)

STATS_SOURCE = SOURCE_CONVERT_REPLAY
REPLAY_PREFIX = "replay/"


@dataclasses.dataclass
class ReplaySummary:
    objects: int = 0
    records: int = 0
    outcomes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    unvalidated: int = 0
    kept: int = 0  # lines that hold no record to replay

    def text(self, reason: str) -> str:
        still = {k: v for k, v in sorted(self.outcomes.items()) if k != oc.PUBLISHED}
        failing = ", ".join(f"{k}: {v}" for k, v in still.items()) or "none"
        return (
            f"replayed {self.records} records of errors/{reason} from {self.objects} objects: "
            f"published {self.outcomes.get(oc.PUBLISHED, 0)} "
            f"(of them unvalidated {self.unvalidated}), not published {sum(still.values())} "
            f"({failing}); left in place {self.kept} lines that hold no record"
        )


def parse_day(text: str) -> str:
    """YYYY-MM-DD or YYYYMMDD -> YYYYMMDD (the error partition's date directory)."""
    for form in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, form).strftime("%Y%m%d")
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m convert replay",
        description=(
            "Run the records kept in errors/REASON/ through conversion again, publish what\n"
            "converts now and remove it from errors/ (what still fails is kept there). Safe to\n"
            "run again, and to interrupt."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"reasons: {', '.join(oc.REASON_CODES)}",
    )
    parser.add_argument(
        "--reason",
        required=True,
        choices=oc.REASON_CODES,
        metavar="REASON",
        help="the error partition to replay (one of the reasons below)",
    )
    parser.add_argument(
        "--since", type=parse_day, metavar="DATE", help="first day (YYYY-MM-DD, UTC), inclusive"
    )
    parser.add_argument(
        "--until", type=parse_day, metavar="DATE", help="last day (YYYY-MM-DD, UTC), inclusive"
    )
    add_common_arguments(parser, "WARNING")
    return parser


def error_objects(store: BlobStore, reason: str, since: str | None, until: str | None) -> list[str]:
    """Keys of the error objects of `reason` whose day lies in [since, until]."""
    prefix = f"{ERRORS_PREFIX}{reason}/"
    keys = []
    for day_prefix in store.list_prefixes(prefix):
        day = day_prefix[len(prefix) :].rstrip("/")
        if (since and day < since) or (until and day > until):
            continue
        keys.extend(info.key for info in store.list(day_prefix))
    return sorted(keys)


def replay_object(
    processor: BatchProcessor, store: BlobStore, key: str, summary: ReplaySummary
) -> None:
    try:
        data = store.get(key)
    except ObjectNotFound:
        return  # replayed by someone else meanwhile
    batch, kept = bytearray(), []
    for line in lz4.frame.decompress(data).splitlines():
        entry = json.loads(line)
        if "body" not in entry or entry.get("reason") == oc.CORRUPT_BATCH or "path" not in entry:
            kept.append(line + b"\n")
            continue
        body = base64.b64decode(entry["body"])
        batch += encode_record(
            int(entry["received_ms"]), entry["path"], entry.get("headers") or {}, body
        )
        summary.records += 1
    summary.objects += 1
    summary.kept += len(kept)
    if batch:
        digest = hashlib.sha256(data).hexdigest()[:16]
        day = key.split("/")[2]
        job = BatchMessage(f"{REPLAY_PREFIX}{key.split('/')[1]}/{day}/{digest}")
        report = processor.process(job, bytes(batch), stats_source=STATS_SOURCE)
        summary.outcomes.update(report.outcomes)
        summary.unvalidated += sum(report.unvalidated.values())
    if kept:
        store.put(key, lz4.frame.compress(b"".join(kept)))
    else:
        store.delete(key)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from convert.worker import ConvertWorker, WorkerOptions

    worker = ConvertWorker(settings, WorkerOptions())
    try:
        keys = error_objects(worker.published, args.reason, args.since, args.until)
        summary = ReplaySummary()
        for key in tqdm(keys, desc=f"errors/{args.reason}", unit="object", file=sys.stderr):
            replay_object(worker.processor, worker.published, key, summary)
    finally:
        worker.close()
    print(summary.text(args.reason))
    return 0


def main(argv: list[str], settings: Settings) -> int:
    args = build_parser().parse_args(argv)
    setup_logging_from_args("convert", args, settings, default_level="WARNING")
    return run(settings, args)
