"""Example scheduled analysis: summarise what the pipeline has published so far.

Writes $OUTPUT_DIR/summary.json with the object count and bytes per top-level partition
(the submission `reason`) of TELEMETRY_PUBLISHED_URL. Aggregates only: published output
is public, and the scheduler refuses raw records.
"""

import datetime as dt
import json
import os
from pathlib import Path

from pipeline.stores import open_store


def main() -> None:
    url = os.environ["TELEMETRY_PUBLISHED_URL"]
    store = open_store(
        url,
        setting="TELEMETRY_PUBLISHED_URL",
        endpoint_url=os.environ.get("TELEMETRY_S3_ENDPOINT_URL"),
    )
    partitions: dict[str, dict[str, int]] = {}
    for info in store.list(""):
        top = info.key.split("/", 1)[0]
        entry = partitions.setdefault(top, {"objects": 0, "bytes": 0})
        entry["objects"] += 1
        entry["bytes"] += info.size
    summary = {
        "job": os.environ.get("JOB_NAME"),
        "run_id": os.environ.get("RUN_ID"),
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "objects": sum(p["objects"] for p in partitions.values()),
        "bytes": sum(p["bytes"] for p in partitions.values()),
        "partitions": partitions,
    }
    out = Path(os.environ.get("OUTPUT_DIR", "output"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(
        f"summarised {summary['objects']} objects ({summary['bytes']} bytes) in {len(partitions)} partitions"
    )


if __name__ == "__main__":
    main()
