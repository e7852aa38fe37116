"""JSON API with bearer-token auth, so the CLI and scripts need no scraping.

Every request carries `Authorization: Bearer <token>` (tokens from /account/tokens or
`python -m dashboard create-token EMAIL`). The session cookie is ignored here, which is why
the blueprint is exempt from CSRF. Permission rules are the pages' rules: a user sees only
their own jobs, runs and workers (admins see all) and anything else is 404.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import select
from werkzeug.datastructures import CombinedMultiDict, MultiDict
from werkzeug.exceptions import HTTPException

from dashboard import database, job_actions, runlogs
from dashboard.api_tokens import user_for_token
from dashboard.auth import owner_filter
from dashboard.errors import WorkerProviderError
from dashboard.formatting import iso_utc as _iso
from dashboard.forms import JobForm, WorkerForm
from dashboard.jobs import get_job, get_run, last_runs, safe_next_run
from dashboard.models import Worker, WorkerState
from dashboard.workers import lifecycle
from dashboard.workers_views import get_worker, launch_from_form, provider_for
from scheduler import jobs as job_store
from scheduler.errors import JobValidationError
from scheduler.job_spec import JOB_FIELDS
from scheduler.models import Job, Run, RunState

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.before_request
def authenticate():
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    user = (
        user_for_token(database.db(), secret.strip())
        if scheme.lower() == "bearer" and secret
        else None
    )
    if user is None:
        response = jsonify(
            error="unauthorized",
            message="Send 'Authorization: Bearer <token>'; create a token at /account/tokens.",
        )
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="telemetry-dashboard"'
        return response
    g.user = user
    return None


@bp.errorhandler(HTTPException)
def json_error(exc: HTTPException):
    response = jsonify(error=exc.name.lower().replace(" ", "_"), message=exc.description)
    response.status_code = exc.code or 500
    return response


def job_json(job: Job, last: Run | None = None) -> dict[str, Any]:
    fields = {name: getattr(job, name) for name in JOB_FIELDS if name != "tarball_key"}
    return {
        **fields,
        "end_date": _iso(job.end_date),
        "next_run": _iso(safe_next_run(job)) if job.enabled else None,
        "last_state": last.state if last else None,
    }


def _form_errors(form) -> dict[str, str]:
    return {name: "; ".join(errors) for name, errors in form.errors.items() if errors}


def _bad_request(errors: dict[str, str]):
    response = jsonify(error="invalid", errors=errors)
    response.status_code = 400
    return response


@bp.get("/jobs")
def list_jobs():
    jobs = list(database.db().scalars(select(Job).where(owner_filter(Job)).order_by(Job.name)))
    latest = last_runs([j.id for j in jobs])
    return jsonify(jobs=[job_json(j, latest.get(j.id)) for j in jobs])


@bp.post("/jobs")
def create_job():
    """multipart/form-data with the form's fields and the `tarball` file."""
    form = JobForm(formdata=CombinedMultiDict([request.files, request.form]), meta={"csrf": False})
    upload = request.files.get("tarball")
    tarball = (upload.filename, upload.read()) if upload and upload.filename else None
    try:
        job = job_actions.create(
            database.db(),
            database.settings(),
            owner=g.user.email,
            name=form.name.data,
            data=form.submitted(),
            tarball=tarball,
            max_bytes=current_app.config["TARBALL_MAX_BYTES"],
        )
    except JobValidationError as exc:
        return _bad_request(exc.errors)
    return jsonify(job=job_json(job)), 201


@bp.get("/jobs/<name>")
def show_job(name: str):
    job = get_job(name)
    return jsonify(job=job_json(job, last_runs([job.id]).get(job.id)))


@bp.patch("/jobs/<name>")
def update_job(name: str):
    """JSON object with any of the owner's fields (scheduler.job_spec.OWNER_FIELDS; end_date
    "YYYY-MM-DD" or null), checked by the same scheduler rules as the form."""
    job = get_job(name)
    changes = request.get_json(silent=True)
    if not isinstance(changes, dict) or not changes:
        return _bad_request({"__all__": "Send a JSON object with the fields to change."})
    try:
        job_actions.update(
            database.db(), database.settings(), job, changes=changes, tarball=None, max_bytes=0
        )
    except JobValidationError as exc:
        return _bad_request(exc.errors)
    return jsonify(job=job_json(job))


@bp.delete("/jobs/<name>")
def delete_job(name: str):
    job_store.delete_job(database.db(), get_job(name))
    return "", 204


@bp.post("/reserved-names/<name>/release")
def release_reserved_name(name: str):
    """Admins only: let anyone use a deleted job's name (and so its public URL) again."""
    if not g.user.is_admin:
        return jsonify(error="only an admin can release a reserved job name"), 403
    if not job_store.release_job_name(database.db(), name):
        return jsonify(error=f"the name {name!r} is not reserved"), 404
    return "", 204


@bp.post("/jobs/<name>/run-now")
def run_now(name: str):
    run = job_store.request_run_now(database.db(), get_job(name))
    return jsonify(run=runlogs.run_summary(database.settings(), run)), 202


@bp.get("/runs")
def list_runs():
    query = select(Run).join(Job).where(owner_filter(Job)).order_by(Run.id.desc())
    if request.args.get("job"):
        query = query.where(Job.name == get_job(request.args["job"]).name)
    if request.args.get("state"):
        query = query.where(Run.state == request.args["state"])
    limit = min(max(request.args.get("limit", 50, type=int), 1), 500)
    runs = database.db().scalars(query.limit(limit))
    settings = database.settings()
    return jsonify(runs=[runlogs.run_summary(settings, run) for run in runs])


@bp.get("/runs/<int:run_id>")
def show_run(run_id: int):
    run = get_run(run_id)
    return jsonify(
        run=runlogs.run_summary(
            database.settings(), run, include_log=request.args.get("log") == "1"
        )
    )


@bp.post("/runs/<int:run_id>/cancel")
def cancel_run(run_id: int):
    run = get_run(run_id)
    if RunState(run.state).finished:
        return jsonify(error="conflict", message=f"run {run.id} has already finished"), 409
    job_store.cancel_run(database.db(), run)
    return jsonify(run=runlogs.run_summary(database.settings(), run)), 202


def worker_json(worker: Worker) -> dict[str, Any]:
    return {
        "id": worker.id,
        "name": worker.name,
        "owner": worker.owner,
        "provider": worker.provider,
        "state": worker.state,
        "connect_command": worker.connect_command,
        "address": worker.address,
        "launched_at": _iso(worker.launched_at),
        "expires_at": _iso(worker.expires_at),
        "terminated_at": _iso(worker.terminated_at),
        "reason": worker.reason,
    }


@bp.get("/workers")
def list_workers():
    workers = database.db().scalars(
        select(Worker).where(owner_filter(Worker)).order_by(Worker.id.desc())
    )
    return jsonify(workers=[worker_json(w) for w in workers])


@bp.post("/workers")
def launch_worker():
    """JSON {"name": ..., "ssh_public_key": ...}."""
    body = request.get_json(silent=True) or {}
    form = WorkerForm(
        formdata=MultiDict({k: str(v) for k, v in body.items()}), meta={"csrf": False}
    )
    if not form.validate():
        return _bad_request(_form_errors(form))
    worker = launch_from_form(form)
    if worker is None:
        return _bad_request(_form_errors(form) or {"__all__": "; ".join(form.form_errors)})
    return jsonify(worker=worker_json(worker)), 201


@bp.post("/workers/<int:worker_id>/extend")
def extend_worker(worker_id: int):
    worker = get_worker(worker_id)
    if not WorkerState(worker.state).active:
        return jsonify(error="conflict", message=f"worker {worker.id} is {worker.state}"), 409
    try:
        lifecycle.extend(
            database.db(),
            provider_for(worker.provider),
            worker,
            dt.timedelta(hours=current_app.config["WORKER_EXTEND_HOURS"]),
        )
    except WorkerProviderError as exc:
        return jsonify(error="provider", message=str(exc)), 502
    return jsonify(worker=worker_json(worker))


@bp.post("/workers/<int:worker_id>/kill")
def kill_worker(worker_id: int):
    worker = get_worker(worker_id)
    if WorkerState(worker.state).active:
        try:
            lifecycle.kill(
                database.db(), provider_for(worker.provider), worker, f"killed by {g.user.email}"
            )
        except WorkerProviderError as exc:
            return jsonify(error="provider", message=str(exc)), 502
    return jsonify(worker=worker_json(worker))
