"""Analysis worker pages: launch (name + SSH key), state, SSH command, kill time, extend, kill."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, url_for
from sqlalchemy import select

from dashboard import database
from dashboard.auth import check_owner, login_required, owner_filter
from dashboard.errors import SSHKeyError, WorkerProviderError
from dashboard.forms import ConfirmForm, WorkerForm
from dashboard.models import Worker, WorkerState
from dashboard.workers import WorkerProvider, get_provider, lifecycle
from dashboard.workers.sshkeys import normalise_ssh_public_key

bp = Blueprint("workers", __name__)


def provider_for(name: str | None = None) -> WorkerProvider:
    config = current_app.config
    return get_provider(name or config["WORKER_PROVIDER"], database.settings(), config)


def get_worker(worker_id: int) -> Worker:
    worker = database.db().get(Worker, worker_id)
    check_owner(worker)
    return worker


def launch_from_form(form: WorkerForm) -> Worker | None:
    """Validate the key and launch; None (with the error on the form) when refused."""
    try:
        key = normalise_ssh_public_key(form.ssh_public_key.data)
    except SSHKeyError as exc:
        form.ssh_public_key.errors = [*form.ssh_public_key.errors, str(exc)]
        return None
    hours = current_app.config["WORKER_LIFETIME_HOURS"]
    try:
        provider = provider_for()
    except WorkerProviderError as exc:
        form.form_errors.append(str(exc))
        return None
    return lifecycle.launch(
        database.db(),
        provider,
        owner=g.user.email,
        name=form.name.data,
        ssh_public_key=key,
        lifetime=dt.timedelta(hours=hours),
    )


@bp.route("/workers", methods=["GET", "POST"])
@login_required
def list_workers():
    form = WorkerForm()
    if form.validate_on_submit():
        worker = launch_from_form(form)
        if worker is not None:
            if worker.state == WorkerState.failed.value:
                flash(f"Worker {worker.name} could not start: {worker.reason}")
            else:
                flash(
                    f"Worker {worker.name} is starting; it will be killed at its kill time unless you extend it."
                )
            return redirect(url_for("workers.list_workers"))
    session = database.db()
    workers = list(
        session.scalars(select(Worker).where(owner_filter(Worker)).order_by(Worker.id.desc()))
    )
    for worker in workers:
        if worker.state == WorkerState.launching.value:
            try:
                lifecycle.refresh(session, provider_for(worker.provider), worker)
            except WorkerProviderError:
                pass
    return render_template(
        "workers/list.html",
        form=form,
        workers=workers,
        confirm=ConfirmForm(),
        lifetime_hours=current_app.config["WORKER_LIFETIME_HOURS"],
        extend_hours=current_app.config["WORKER_EXTEND_HOURS"],
    )


@bp.route("/workers/<int:worker_id>/extend", methods=["POST"])
@login_required
def extend_worker(worker_id: int):
    worker = get_worker(worker_id)
    if not WorkerState(worker.state).active:
        abort(409)
    try:
        lifecycle.extend(
            database.db(),
            provider_for(worker.provider),
            worker,
            dt.timedelta(hours=current_app.config["WORKER_EXTEND_HOURS"]),
        )
    except WorkerProviderError as exc:
        flash(f"Worker {worker.name} could not be extended: {exc}")
        return redirect(url_for("workers.list_workers"))
    flash(f"Worker {worker.name} now lives until {worker.expires_at:%Y-%m-%d %H:%M} UTC.")
    return redirect(url_for("workers.list_workers"))


@bp.route("/workers/<int:worker_id>/kill", methods=["POST"])
@login_required
def kill_worker(worker_id: int):
    worker = get_worker(worker_id)
    if not WorkerState(worker.state).active:
        flash(f"Worker {worker.name} is already stopped.")
        return redirect(url_for("workers.list_workers"))
    try:
        lifecycle.kill(
            database.db(), provider_for(worker.provider), worker, f"killed by {g.user.email}"
        )
    except WorkerProviderError as exc:
        flash(f"Could not kill worker {worker.name}: {exc}")
    else:
        flash(f"Worker {worker.name} is terminated.")
    return redirect(url_for("workers.list_workers"))
