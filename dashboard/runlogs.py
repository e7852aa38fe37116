"""A run's log and published files as the dashboard shows them.

A finished run's log is in the public store at `run.log_key`; while the run is going the
scheduler's local runner writes it to `<work_dir>/<run_id>/run.log` (work_dir defaults to
`$TELEMETRY_DATA_DIR/runs`), which the dashboard reads directly when both share the data
directory (the embedded setup). Runs on EC2 show their log once it is published. Only the tail is sent to the page.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import url_for

from dashboard.formatting import duration, utc
from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.stores import open_store
from scheduler.config import load_scheduler_config
from scheduler.models import Run, RunState

log = logging.getLogger(__name__)
TAIL_BYTES = 64 * 1024


def public_store(settings: Settings):
    return open_store(
        settings.public_url, setting="TELEMETRY_PUBLIC_URL", endpoint_url=settings.s3_endpoint_url
    )


def _tail(data: bytes, limit: int = TAIL_BYTES) -> str:
    if len(data) > limit:
        data = data[-limit:]
        data = data[data.find(b"\n") + 1 :] if b"\n" in data else data
        return "… (earlier lines omitted)\n" + data.decode("utf-8", "replace")
    return data.decode("utf-8", "replace")


def live_log_path(settings: Settings, run: Run) -> Path | None:
    """Where the scheduler's local runner writes the log of a run in progress (if known)."""
    if run.state != RunState.running.value:
        return None
    work_dir = load_scheduler_config().work_dir or Path(settings.data_dir) / "runs"
    return Path(work_dir) / str(run.id) / "run.log"


def read_log(settings: Settings, run: Run) -> str:
    if run.log_key:
        try:
            return _tail(public_store(settings).get(run.log_key))
        except PipelineError as exc:
            log.warning("run %s: cannot read log %s: %s", run.id, run.log_key, exc)
    path = live_log_path(settings, run)
    if path is not None and path.is_file():
        with path.open("rb") as handle:
            size = path.stat().st_size
            handle.seek(max(0, size - TAIL_BYTES - 1))
            return _tail(handle.read())
    if run.state == RunState.scheduled.value:
        return "(the run has not started yet)"
    return "(no log yet)"


def published_links(run: Run) -> list[dict[str, str]]:
    """[{path, url}] for every published file, linking to the public listing's download."""
    links = []
    prefix = f"{run.job.name}/data/"
    for entry in run.published_files or []:
        key = entry if isinstance(entry, str) else str(entry.get("key") or entry.get("path"))
        relative = key[len(prefix) :] if key.startswith(prefix) else key
        links.append(
            {
                "path": relative,
                "url": url_for("public.browse", job_name=run.job.name, subpath=relative),
            }
        )
    return links


def run_summary(settings: Settings, run: Run, include_log: bool = False) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "id": run.id,
        "job": run.job.name,
        "state": run.state,
        "finished": RunState(run.state).finished,
        "trigger": run.trigger,
        "scheduled_for": utc(run.scheduled_for),
        "started_at": utc(run.started_at) if run.started_at else None,
        "finished_at": utc(run.finished_at) if run.finished_at else None,
        "duration": duration(run.started_at, run.finished_at),
        "exit_code": run.exit_code,
        "reason": run.reason,
        "published_files": published_links(run),
    }
    if include_log:
        summary["log"] = read_log(settings, run)
    return summary
