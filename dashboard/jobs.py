"""Job pages: my jobs, the "Schedule a Job" form, edit/delete/enable/run-now, runs and logs."""

from __future__ import annotations

import logging

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select

from dashboard import database, job_actions, runlogs
from dashboard.auth import check_owner, login_required, owner_filter
from dashboard.forms import ConfirmForm, JobForm
from scheduler import jobs as job_store
from scheduler.errors import JobValidationError
from scheduler.models import Job, Run, RunState
from scheduler.triggers import next_run_time

log = logging.getLogger(__name__)
bp = Blueprint("jobs", __name__)


@login_required
def index():
    return redirect(url_for("jobs.list_jobs"))


def get_job(name: str) -> Job:
    job = database.db().scalar(select(Job).where(Job.name == name))
    check_owner(job)
    return job


def get_run(run_id: int) -> Run:
    run = database.db().get(Run, run_id)
    if run is None:
        abort(404)
    check_owner(run.job)
    return run


def last_runs(job_ids: list[int]) -> dict[int, Run]:
    """The newest run of each job, in one query."""
    if not job_ids:
        return {}
    rows = database.db().scalars(
        select(Run).where(Run.job_id.in_(job_ids)).order_by(Run.job_id, Run.id)
    )
    return {run.job_id: run for run in rows}


def safe_next_run(job: Job):
    try:
        return next_run_time(job)
    except Exception:  # a job whose schedule cannot fire (expired) shows no next run
        log.debug("no next run for job %s", job.name, exc_info=True)
        return None


def _uploaded(form: JobForm) -> tuple[str, bytes] | None:
    upload = form.tarball.data
    if upload is None or not getattr(upload, "filename", ""):
        return None
    limit = current_app.config["TARBALL_MAX_BYTES"]
    return upload.filename, upload.stream.read(limit + 1)


def _ask_for_tarball_again(form: JobForm, editing: bool = False) -> None:
    """A form that comes back with errors cannot keep its chosen file (browsers never refill a
    file input), so say so beside the field instead of leaving it silently empty."""
    upload = form.tarball.data
    filename = getattr(upload, "filename", "") if upload is not None else ""
    if not filename or form.tarball.errors:
        return  # nothing chosen, or the tarball's own error already asks for another one
    keep = " (or leave it empty to keep the current one)" if editing else ""
    form.tarball.errors = [
        f"Choose {filename} again{keep}: a browser does not keep a chosen file when the form "
        "comes back with errors."
    ]


def _apply_errors(form: JobForm, errors: dict[str, str]) -> None:
    """Each problem beside the field it names; one the form has no field for, above it."""
    for field, message in errors.items():
        if field in form:
            form[field].errors = [*form[field].errors, message]
        else:
            form.form_errors.append(f"{field}: {message}")


@bp.route("/jobs")
@login_required
def list_jobs():
    session = database.db()
    jobs = list(session.scalars(select(Job).where(owner_filter(Job)).order_by(Job.name)))
    latest = last_runs([job.id for job in jobs])
    rows = [(job, safe_next_run(job) if job.enabled else None, latest.get(job.id)) for job in jobs]
    return render_template("jobs/list.html", rows=rows)


@bp.route("/jobs/new/check-name")
@login_required
def check_name():
    """Live validation for the Job Name field: {"ok": bool, "message": str}."""
    name = request.args.get("name", "").strip()
    problem = job_store.name_problem(database.db(), name, owner=g.user.email)
    return jsonify(ok=problem is None, message=problem or f"{name!r} is available.")


@bp.route("/jobs/new", methods=["GET", "POST"])
@login_required
def new_job():
    form = JobForm()
    if form.validate_on_submit():
        try:
            job = job_actions.create(
                database.db(),
                database.settings(),
                owner=g.user.email,
                name=form.name.data,
                data=form.submitted(),
                tarball=_uploaded(form),
                max_bytes=current_app.config["TARBALL_MAX_BYTES"],
            )
        except JobValidationError as exc:
            _apply_errors(form, exc.errors)
        else:
            flash(f"Job {job.name} is scheduled.")
            return redirect(url_for("jobs.show_job", name=job.name))
    if request.method == "POST":
        _ask_for_tarball_again(form)
    return render_template("jobs/form.html", form=form, job=None)


@bp.route("/jobs/<name>", methods=["GET", "POST"])
@login_required
def show_job(name: str):
    job = get_job(name)
    form = JobForm.for_job(job) if request.method == "GET" else JobForm()
    form.name.data = job.name  # the name is the job's public address; it does not change
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                job_actions.update(
                    database.db(),
                    database.settings(),
                    job,
                    changes=form.submitted(),
                    tarball=_uploaded(form),
                    max_bytes=current_app.config["TARBALL_MAX_BYTES"],
                )
            except JobValidationError as exc:
                _apply_errors(form, exc.errors)
            else:
                flash(f"Job {job.name} is saved.")
                return redirect(url_for("jobs.show_job", name=job.name))
        _ask_for_tarball_again(form, editing=True)
    runs = list(
        database.db().scalars(
            select(Run)
            .where(Run.job_id == job.id)
            .order_by(Run.scheduled_for.desc(), Run.id.desc())
            .limit(100)
        )
    )
    next_run = safe_next_run(job) if job.enabled else None
    published = runlogs.has_published_data(runlogs.public_store(database.settings()), job.name)
    return render_template(
        "jobs/show.html",
        job=job,
        form=form,
        runs=runs,
        next_run=next_run,
        published=published,
        confirm=ConfirmForm(),
    )


@bp.route("/jobs/<name>/delete", methods=["POST"])
@login_required
def delete_job(name: str):
    job = get_job(name)
    job_store.delete_job(database.db(), job)
    log.info("job %s deleted by %s", name, g.user.email)
    flash(f"Job {name} is deleted.")
    return redirect(url_for("jobs.list_jobs"))


@bp.route("/jobs/<name>/toggle", methods=["POST"])
@login_required
def toggle_job(name: str):
    job = get_job(name)
    job_store.update_job(database.db(), job, enabled=not job.enabled)
    flash(f"Job {name} is {'enabled' if job.enabled else 'disabled'}.")
    return redirect(url_for("jobs.show_job", name=name))


@bp.route("/jobs/<name>/run-now", methods=["POST"])
@login_required
def run_now(name: str):
    job = get_job(name)
    run = job_store.request_run_now(database.db(), job)
    log.info("run %s of job %s requested by %s", run.id, name, g.user.email)
    return redirect(url_for("jobs.show_run", run_id=run.id))


@bp.route("/runs/<int:run_id>")
@login_required
def show_run(run_id: int):
    run = get_run(run_id)
    waiting_without_service = run.state == RunState.scheduled.value and not job_store.service_alive(
        database.db()
    )
    return render_template(
        "jobs/run.html",
        waiting_without_service=waiting_without_service,
        run=run,
        job=run.job,
        log_text=runlogs.read_log(database.settings(), run),
        files=runlogs.published_links(run),
        files_note=runlogs.files_note(run),
        banner=runlogs.run_banner(run),
        exit_hint=runlogs.exit_hint(run),
        confirm=ConfirmForm(),
        finished=RunState(run.state).finished,
    )


@bp.route("/runs/<int:run_id>/log.json")
@login_required
def run_log(run_id: int):
    """What the run page polls while the run is going: state, times and the log's tail."""
    run = get_run(run_id)
    return jsonify(runlogs.run_summary(database.settings(), run, include_log=True))


@bp.route("/runs/<int:run_id>/cancel", methods=["POST"])
@login_required
def cancel_run(run_id: int):
    run = get_run(run_id)
    if RunState(run.state).finished:
        flash(f"Run {run.id} has already finished.")
    else:
        job_store.cancel_run(database.db(), run)
        flash(f"Run {run.id} is being cancelled.")
    return redirect(url_for("jobs.show_run", run_id=run.id))
