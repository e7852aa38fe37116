"""Worker lifecycle: launch, extend, kill, and the expiry sweep (warning mail, then termination).

`expire_workers` is called periodically by the dashboard process (`python -m dashboard` runs
it in a background thread every EXPIRY_INTERVAL_SECONDS); it is idempotent, so several
dashboard processes may run it at once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dashboard.errors import WorkerProviderError
from dashboard.formatting import utc
from dashboard.models import Worker, WorkerState
from dashboard.workers.base import WorkerProvider
from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.mail import send_mail as deliver
from scheduler.models import utcnow

log = logging.getLogger(__name__)
ProviderFor = Callable[[str], WorkerProvider]


def send_mail(settings: Settings, to: str, subject: str, body: str) -> bool:
    """Mail through pipeline.mail (SMTP, or the log on the embedded default); False if it failed."""
    try:
        deliver(settings, to, subject, body)
    except PipelineError as exc:
        log.error("could not mail %s about %r: %s", to, subject, exc)
        return False
    return True


def launch(
    session: Session,
    provider: WorkerProvider,
    *,
    owner: str,
    name: str,
    ssh_public_key: str,
    lifetime: dt.timedelta,
    now: dt.datetime | None = None,
) -> Worker:
    """Record the worker, then start it; a provider failure leaves a `failed` record with the reason."""
    now = now or utcnow()
    worker = Worker(
        name=name,
        owner=owner,
        provider=provider.name,
        ssh_public_key=ssh_public_key,
        state=WorkerState.launching.value,
        launched_at=now,
        expires_at=now + lifetime,
    )
    session.add(worker)
    session.commit()
    try:
        result = provider.launch(worker.id, name, owner, ssh_public_key, worker.expires_at)
    except WorkerProviderError as exc:
        worker.state = WorkerState.failed.value
        worker.reason = str(exc)
        worker.terminated_at = now
        session.commit()
        log.error("worker %s failed to launch: %s", worker.id, exc)
        return worker
    worker.instance_id = result.instance_id
    worker.address = result.address
    worker.connect_command = result.connect_command
    worker.state = (WorkerState.running if result.running else WorkerState.launching).value
    session.commit()
    log.info(
        "worker %s (%s) launched for %s until %s", worker.id, name, owner, utc(worker.expires_at)
    )
    return worker


def refresh(session: Session, provider: WorkerProvider, worker: Worker) -> None:
    """Pick up a booting machine's address (ec2)."""
    if worker.state != WorkerState.launching.value or not worker.instance_id:
        return
    result = provider.refresh(worker.instance_id)
    if result is not None:
        worker.address = result.address
        worker.connect_command = result.connect_command
        if result.running:
            worker.state = WorkerState.running.value
        session.commit()


def extend(
    session: Session,
    provider: WorkerProvider,
    worker: Worker,
    by: dt.timedelta,
    now: dt.datetime | None = None,
) -> None:
    """Push the kill time `by` later (from now if it has already passed) and re-arm the warning.

    The machine is told first (an EC2 worker stops itself after its kill time); when that
    fails, WorkerProviderError is raised and nothing changes.
    """
    now = now or utcnow()
    expires_at = max(worker.expires_at, now) + by
    if worker.instance_id:
        provider.extend(worker.instance_id, expires_at)
    worker.expires_at = expires_at
    worker.warned_at = None
    session.commit()
    log.info("worker %s extended until %s", worker.id, utc(worker.expires_at))


def kill(
    session: Session,
    provider: WorkerProvider,
    worker: Worker,
    reason: str,
    now: dt.datetime | None = None,
) -> None:
    """Terminate the machine and mark the record; raises WorkerProviderError if the provider fails."""
    if worker.instance_id:
        provider.terminate(worker.instance_id)
    worker.state = WorkerState.terminated.value
    worker.terminated_at = now or utcnow()
    worker.reason = reason
    session.commit()
    log.info("worker %s terminated: %s", worker.id, reason)


def _gone(provider_for: ProviderFor, worker: Worker) -> str:
    """Why an active worker's machine is no longer there ("" while it is, or if unknown)."""
    if worker.state != WorkerState.running.value or not worker.instance_id:
        return ""
    try:
        gone = provider_for(worker.provider).is_gone(worker.instance_id)
    except WorkerProviderError as exc:
        log.warning("worker %s: cannot tell whether it still runs: %s", worker.id, exc)
        return ""
    if gone:
        return "stopped by itself (its machine or the dashboard process that ran it ended)"
    return ""


def expire_workers(
    sessions: sessionmaker,
    settings: Settings,
    provider_for: ProviderFor,
    now: dt.datetime,
    warn_before: dt.timedelta = dt.timedelta(hours=1),
) -> dict[str, int]:
    """Warn owners whose workers expire within `warn_before`, terminate those past expiry,
    and clean up after workers whose machine ended by itself.

    Returns {"warned": n, "terminated": n, "errors": n}. A failed termination stays active
    and is retried by the next sweep.
    """
    counts = {"warned": 0, "terminated": 0, "errors": 0}
    active = [WorkerState.launching.value, WorkerState.running.value]
    with sessions() as session:
        workers = list(session.scalars(select(Worker).where(Worker.state.in_(active))))
        for worker in workers:
            gone = _gone(provider_for, worker)
            if gone and worker.expires_at > now:
                try:
                    kill(session, provider_for(worker.provider), worker, gone, now)
                except WorkerProviderError as exc:
                    session.rollback()
                    counts["errors"] += 1
                    log.error("worker %s: cleaning up after it ended failed: %s", worker.id, exc)
                    continue
                counts["terminated"] += 1
                send_mail(
                    settings,
                    worker.owner,
                    f"Worker {worker.name} has stopped",
                    f"Your analysis worker {worker.name} {gone}.\n",
                )
            elif worker.expires_at <= now:
                try:
                    kill(session, provider_for(worker.provider), worker, "expired", now)
                except WorkerProviderError as exc:
                    session.rollback()
                    counts["errors"] += 1
                    log.error(
                        "worker %s: termination at expiry failed, will retry: %s", worker.id, exc
                    )
                    continue
                counts["terminated"] += 1
                send_mail(
                    settings,
                    worker.owner,
                    f"Worker {worker.name} was terminated",
                    f"Your analysis worker {worker.name} reached its kill time ({utc(worker.expires_at)}) "
                    "and was terminated.\n",
                )
            elif worker.warned_at is None and worker.expires_at - warn_before <= now:
                link = f"{settings.public_base_url.rstrip('/')}/workers"
                sent = send_mail(
                    settings,
                    worker.owner,
                    f"Worker {worker.name} will be terminated at {utc(worker.expires_at)}",
                    f"Your analysis worker {worker.name} will be terminated at {utc(worker.expires_at)}.\n"
                    f"Copy anything you want to keep, or extend it at {link}.\n",
                )
                if not sent:  # try again on the next sweep
                    counts["errors"] += 1
                    continue
                worker.warned_at = now
                session.commit()
                counts["warned"] += 1
    return counts
