"""Emails to a job's owner: a run failed or timed out, or the job passed its end date.

Mail problems are logged and swallowed: a notification must never take the service down.
"""

from __future__ import annotations

import logging

from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.mail import send_mail

log = logging.getLogger(__name__)

NOTIFY_STATES = {"failed", "timed_out", "lost"}


def run_message(
    job_name: str, run_id: int, state: str, reason: str, log_tail: str, log_url: str | None
) -> tuple[str, str]:
    subject = f"[telemetry] job {job_name}: run {run_id} {state.replace('_', ' ')}"
    lines = [
        f"Job:    {job_name}",
        f"Run:    {run_id}",
        f"State:  {state}",
        f"Reason: {reason}",
    ]
    if log_url:
        lines.append(f"Log:    {log_url}")
    lines += ["", "Last lines of the log:", "", log_tail or "(the log is empty)"]
    return subject, "\n".join(lines) + "\n"


def notify_run(
    settings: Settings,
    *,
    owner: str,
    job_name: str,
    run_id: int,
    state: str,
    reason: str,
    log_tail: str,
    log_key: str | None,
) -> bool:
    """Email the owner when `state` is failed, timed_out or lost; True when a message went out."""
    if state not in NOTIFY_STATES:
        return False
    log_url = f"{settings.public_base_url.rstrip('/')}/runs/{run_id}" if log_key else None
    subject, body = run_message(job_name, run_id, state, reason, log_tail, log_url)
    return _send(settings, owner, subject, body, f"run {run_id}")


def notify_expired(settings: Settings, *, owner: str, job_name: str, end_date) -> bool:
    subject = f"[telemetry] job {job_name} has expired"
    body = (
        f"Job:    {job_name}\n"
        f"Reason: its end date {end_date:%Y-%m-%d %H:%M} UTC has passed, so it will not run again.\n\n"
        "Edit the job and move the end date to keep it running.\n"
    )
    return _send(settings, owner, subject, body, f"job {job_name}")


def _send(settings: Settings, to: str, subject: str, body: str, what: str) -> bool:
    try:
        send_mail(settings, to, subject, body)
        return True
    except PipelineError as exc:
        log.error("%s: could not email %s: %s", what, to, exc)
        return False
