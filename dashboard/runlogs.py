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

from dashboard.formatting import iso_utc
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


def has_published_data(store, job_name: str) -> bool:
    """Whether `<job_name>/data/` holds anything, i.e. whether its public listing is not a 404."""
    return next(iter(store.list(f"{job_name}/data/")), None) is not None


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


# What the run page's banner says in each state (the page's script swaps it as the state moves).
BANNERS = {
    RunState.scheduled: "Run {id} is queued; the scheduler starts it within seconds.",
    RunState.running: "Run {id} is running; this page follows its log.",
    RunState.succeeded: "Run {id} succeeded.",
    RunState.failed: "Run {id} failed.",
    RunState.timed_out: "Run {id} was stopped at the job's timeout.",
    RunState.cancelled: "Run {id} was cancelled.",
    RunState.lost: "Run {id} was lost: the scheduler stopped while it ran.",
    RunState.missed: "Run {id} did not take place.",
}
# Why a command's exit status means what it does, for the two a newcomer meets most.
EXIT_HINTS = {
    126: "Exit code 126: the command was found but could not be executed. A script started as "
    "./run.sh must be executable in the tarball (chmod +x run.sh before packing it), or start "
    "it with bash run.sh.",
    127: "Exit code 127: command not found. Check the spelling and that the file is in the "
    "tarball, relative to its top directory.",
}


def run_banner(run: Run) -> str:
    return BANNERS[RunState(run.state)].format(id=run.id)


def exit_hint(run: Run) -> str | None:
    return EXIT_HINTS.get(run.exit_code) if run.exit_code is not None else None


def files_note(run: Run) -> str:
    """What the "Published files" list says while it is empty."""
    state = RunState(run.state)
    if not state.finished:
        return "None yet: files are published when the run succeeds."
    if state is RunState.succeeded:
        return "None: the run left no files in its output directory."
    return "None: only a successful run publishes files (this run's log is above)."


def duration_seconds(run: Run) -> float | None:
    if run.started_at is None or run.finished_at is None:
        return None
    return (run.finished_at - run.started_at).total_seconds()


def run_summary(settings: Settings, run: Run, include_log: bool = False) -> dict[str, Any]:
    """A run as JSON: times in ISO 8601 (UTC), the duration in seconds (null until finished)."""
    summary: dict[str, Any] = {
        "id": run.id,
        "job": run.job.name,
        "state": run.state,
        "finished": RunState(run.state).finished,
        "trigger": run.trigger,
        "scheduled_for": iso_utc(run.scheduled_for),
        "started_at": iso_utc(run.started_at),
        "finished_at": iso_utc(run.finished_at),
        "duration_seconds": duration_seconds(run),
        "exit_code": run.exit_code,
        "exit_hint": exit_hint(run),
        "reason": run.reason,
        "banner": run_banner(run),
        "published_files": published_links(run),
        "published_files_note": files_note(run),
    }
    if include_log:
        summary["log"] = read_log(settings, run)
    return summary
