"""Job pages: schedule, list, edit (keep/replace tarball), enable/disable, delete, run now,
runs and logs, and that another user's job is 404 while an admin sees all."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from dashboard import create_app, database
from pipeline.stores import open_store
from scheduler.models import Job, Run, RunState
from tests.support.dashboard import add_user, count, csrf_token, post_job, sign_in
from tests.support.tarballs import make_tarball


@pytest.fixture
def app_users() -> dict[str, bool]:
    return {"ada@example.org": False, "bob@example.org": False, "root@example.org": True}


@pytest.fixture
def signed_in_as() -> str:
    return "ada@example.org"


@pytest.fixture
def bob(app):
    client = app.test_client()
    sign_in(client, "bob@example.org")
    return client


def get_job(app, name):
    with app.app_context():
        return database.db().scalar(select(Job).where(Job.name == name))


def test_new_job_form_shows_every_field_with_help_and_utc(client):
    html = client.get("/jobs/new").get_data(as_text=True)
    for label in (
        "Job Name",
        "Code Tarball",
        "Execution Commandline",
        "Output Directory",
        "Schedule Frequency",
        "Day of Week",
        "Day of Month",
        "Time of Day (UTC)",
        "Job Timeout (minutes)",
    ):
        assert label in html
    assert '<option selected value="12">12:00 UTC</option>' in html
    assert html.count('class="help"') >= 9
    assert 'enctype="multipart/form-data"' in html


def test_scheduling_a_job_stores_it_with_its_tarball(app, client, settings):
    response = post_job(client, frequency="weekly", day_of_week="2", hour="7", timeout_minutes="30")
    assert response.status_code == 302
    assert response.headers["Location"] == "/jobs/weekly-report"
    job = get_job(app, "weekly-report")
    assert (job.owner, job.frequency, job.day_of_week, job.hour, job.timeout_minutes) == (
        "ada@example.org",
        "weekly",
        2,
        7,
        30,
    )
    code = open_store(settings.code_url)
    assert code.get(job.tarball_key) == make_tarball()


def test_job_list_shows_next_run_and_last_state(app, client):
    post_job(client, hour="3")
    job = get_job(app, "weekly-report")
    with app.app_context():
        database.db().add(
            Run(job_id=job.id, scheduled_for=dt.datetime(2024, 1, 1, 3), state="failed")
        )
        database.db().commit()
    html = client.get("/jobs").get_data(as_text=True)
    assert "weekly-report" in html
    assert "03:00:00 UTC" in html  # next run time
    assert "state-failed" in html


def test_live_name_check_reports_taken_and_bad_names(client):
    assert client.get("/jobs/new/check-name?name=fresh").get_json()["ok"] is True
    post_job(client)
    taken = client.get("/jobs/new/check-name?name=weekly-report").get_json()
    assert taken["ok"] is False and "already exists" in taken["message"]
    assert client.get("/jobs/new/check-name?name=bad name").get_json()["ok"] is False
    assert client.get("/jobs/new/check-name?name=new").get_json()["ok"] is False


def test_another_users_job_is_404_everywhere(app, client, bob):
    post_job(client)
    job = get_job(app, "weekly-report")
    run = _add_run(app, job)
    assert bob.get("/jobs/weekly-report").status_code == 404
    assert bob.get(f"/runs/{run}").status_code == 404
    assert bob.get(f"/runs/{run}/log.json").status_code == 404
    token = csrf_token(bob, "/jobs")
    for path in (
        "/jobs/weekly-report/delete",
        "/jobs/weekly-report/toggle",
        "/jobs/weekly-report/run-now",
        f"/runs/{run}/cancel",
    ):
        assert bob.post(path, data={"csrf_token": token}).status_code == 404
    assert (
        post_job(bob, url="/jobs/weekly-report", tarball=False, csrf_url="/jobs").status_code == 404
    )
    assert "weekly-report" not in bob.get("/jobs").get_data(as_text=True)
    assert get_job(app, "weekly-report").enabled is True


def test_admin_sees_and_changes_every_job(app, client):
    post_job(client)
    admin = app.test_client()
    sign_in(admin, "root@example.org")
    assert "weekly-report" in admin.get("/jobs").get_data(as_text=True)
    assert admin.get("/jobs/weekly-report").status_code == 200
    admin.post("/jobs/weekly-report/toggle", data={"csrf_token": csrf_token(admin, "/jobs")})
    assert get_job(app, "weekly-report").enabled is False


def test_missing_csrf_token_is_400_and_changes_nothing(app, client):
    assert post_job(client, csrf=False).status_code == 400
    assert count(app, Job) == 0
    post_job(client)
    for path in (
        "/jobs/weekly-report/delete",
        "/jobs/weekly-report/toggle",
        "/jobs/weekly-report/run-now",
    ):
        assert client.post(path).status_code == 400
    assert (
        post_job(client, url="/jobs/weekly-report", csrf=False, command="changed").status_code
        == 400
    )
    job = get_job(app, "weekly-report")
    assert job.enabled and job.command == "bash run.sh"
    assert count(app, Run) == 0


def test_edit_keeps_the_tarball_when_none_is_uploaded(app, client):
    post_job(client)
    before = get_job(app, "weekly-report").tarball_key
    response = post_job(
        client,
        url="/jobs/weekly-report",
        tarball=False,
        command="python go.py",
        frequency="monthly",
        day_of_month="31",
        hour="0",
    )
    assert response.status_code == 302
    job = get_job(app, "weekly-report")
    assert (job.command, job.frequency, job.day_of_month, job.hour, job.tarball_key) == (
        "python go.py",
        "monthly",
        31,
        0,
        before,
    )


def test_edit_replaces_the_tarball_when_one_is_uploaded(app, client, settings):
    post_job(client)
    before = get_job(app, "weekly-report").tarball_key
    new_code = make_tarball({"go.sh": "echo v2\n"})
    assert post_job(client, url="/jobs/weekly-report", tarball=new_code).status_code == 302
    job = get_job(app, "weekly-report")
    assert job.tarball_key != before
    assert open_store(settings.code_url).get(job.tarball_key) == new_code


def test_edit_cannot_rename_a_job(app, client):
    post_job(client)
    post_job(client, url="/jobs/weekly-report", tarball=False, name="renamed")
    assert get_job(app, "renamed") is None
    assert get_job(app, "weekly-report") is not None


def test_enable_disable_and_delete(app, client):
    post_job(client)
    token = csrf_token(client, "/jobs")
    client.post("/jobs/weekly-report/toggle", data={"csrf_token": token})
    assert get_job(app, "weekly-report").enabled is False
    client.post("/jobs/weekly-report/toggle", data={"csrf_token": token})
    assert get_job(app, "weekly-report").enabled is True
    response = client.post("/jobs/weekly-report/delete", data={"csrf_token": token})
    assert response.status_code == 302
    assert get_job(app, "weekly-report") is None
    assert client.get("/jobs/weekly-report").status_code == 404


def test_run_now_queues_a_manual_run_and_shows_it(app, client):
    post_job(client)
    response = client.post(
        "/jobs/weekly-report/run-now", data={"csrf_token": csrf_token(client, "/jobs")}
    )
    assert response.status_code == 302
    with app.app_context():
        run = database.db().scalar(select(Run))
    assert (run.trigger, run.state) == ("manual", "scheduled")
    assert response.headers["Location"] == f"/runs/{run.id}"
    page = client.get(f"/runs/{run.id}").get_data(as_text=True)
    assert "not started yet" in page and "Cancel run" in page
    assert "No scheduler service is running" in page
    assert page.count("is queued") == 1  # the state banner, not also a flash
    history = client.get("/jobs/weekly-report").get_data(as_text=True)
    assert f"/runs/{run.id}" in history and "manual" in history


def test_cancel_of_a_scheduled_run(app, client):
    post_job(client)
    client.post("/jobs/weekly-report/run-now", data={"csrf_token": csrf_token(client, "/jobs")})
    with app.app_context():
        run_id = database.db().scalar(select(Run.id))
    client.post(f"/runs/{run_id}/cancel", data={"csrf_token": csrf_token(client, "/jobs")})
    with app.app_context():
        assert database.db().get(Run, run_id).state == "cancelled"


def _add_run(app, job, **fields) -> int:
    with app.app_context():
        run = Run(
            job_id=job.id,
            scheduled_for=fields.pop("scheduled_for", dt.datetime(2024, 5, 1, 12)),
            **fields,
        )
        database.db().add(run)
        database.db().commit()
        return run.id


def test_finished_run_shows_published_log_files_and_history_columns(app, client, settings):
    post_job(client)
    job = get_job(app, "weekly-report")
    public = open_store(settings.public_url)
    public.put("weekly-report/logs/9.log", b"line one\nall done\n")
    public.put("weekly-report/data/result.txt", b"42\n")
    run_id = _add_run(
        app,
        job,
        state="succeeded",
        started_at=dt.datetime(2024, 5, 1, 12, 0, 1),
        finished_at=dt.datetime(2024, 5, 1, 12, 2, 3),
        exit_code=0,
        reason="exit code 0",
        log_key="weekly-report/logs/9.log",
        published_files=["weekly-report/data/result.txt"],
    )
    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert "all done" in page
    assert 'href="/public/weekly-report/data/result.txt"' in page
    history = client.get("/jobs/weekly-report").get_data(as_text=True)
    for text in (
        "2024-05-01 12:00:01 UTC",
        "2024-05-01 12:02:03 UTC",
        "2m 02s",
        "exit code 0",
        "state-succeeded",
    ):
        assert text in history
    summary = client.get(f"/runs/{run_id}/log.json").get_json()
    assert summary["finished"] is True and summary["exit_code"] == 0
    assert summary["started_at"] == "2024-05-01T12:00:01+00:00"  # ISO 8601, as jobs and workers
    assert summary["finished_at"] == "2024-05-01T12:02:03+00:00"
    assert summary["duration_seconds"] == 122.0
    assert "Run " in page and "succeeded." in page and "Cancel run" not in page
    assert summary["published_files"] == [
        {"path": "result.txt", "url": "/public/weekly-report/data/result.txt"}
    ]


def test_running_run_log_json_tails_the_live_log(app, client, settings):
    post_job(client)
    run_id = _add_run(
        app,
        get_job(app, "weekly-report"),
        state=RunState.running.value,
        started_at=dt.datetime(2024, 5, 1, 12),
    )
    live = settings.data_dir + f"/runs/{run_id}/run.log"
    import os

    os.makedirs(os.path.dirname(live))
    with open(live, "w") as handle:
        handle.write("".join(f"line {i}\n" for i in range(20000)) + "still going\n")
    summary = client.get(f"/runs/{run_id}/log.json").get_json()
    assert summary["state"] == "running" and summary["finished"] is False
    assert summary["log"].endswith("still going\n")
    assert "earlier lines omitted" in summary["log"]
    assert "line 0\n" not in summary["log"]


def test_unknown_run_and_job_are_404(client):
    assert client.get("/runs/999").status_code == 404
    assert client.get("/jobs/nope").status_code == 404


def test_jobs_made_in_the_dashboard_run_where_the_operator_configured(data_dir, monkeypatch):
    """TELEMETRY_RUNNER=ec2 is the operator's choice: a job scheduled with the form (even one
    posting its own `runner` field) gets it, through the settings the app loads itself."""
    monkeypatch.setenv("TELEMETRY_RUNNER", "ec2")
    app = create_app()  # as `python -m dashboard` builds it: settings from the environment
    add_user(app, "ada@example.org")
    client = app.test_client()
    sign_in(client, "ada@example.org")
    assert post_job(client, runner="local").status_code == 302
    with app.app_context():
        assert database.settings().runner == "ec2"
    assert get_job(app, "weekly-report").runner == "ec2"
    # Editing the job keeps the runner it was created with.
    assert post_job(client, url="/jobs/weekly-report", tarball=False, hour="4").status_code == 302
    assert get_job(app, "weekly-report").runner == "ec2"


def test_an_unknown_configured_runner_stops_the_dashboard_at_start(data_dir, monkeypatch):
    from pipeline.errors import ConfigError

    monkeypatch.setenv("TELEMETRY_RUNNER", "lambda")
    with pytest.raises(ConfigError) as caught:
        create_app()
    assert caught.value.setting == "TELEMETRY_RUNNER"


def test_a_failed_run_says_why_nothing_was_published_and_offers_no_cancel(app, client):
    post_job(client)
    run_id = _add_run(
        app,
        get_job(app, "weekly-report"),
        state="failed",
        started_at=dt.datetime(2024, 5, 1, 12),
        finished_at=dt.datetime(2024, 5, 1, 12, 0, 2),
        exit_code=126,
        reason="exit code 126",
    )
    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert f"Run {run_id} failed." in page
    assert "is queued" not in page and "Cancel run" not in page
    assert "None yet" not in page and "only a successful run publishes files" in page
    assert "chmod +x run.sh" in page  # exit 126: the script is not executable
    summary = client.get(f"/runs/{run_id}/log.json").get_json()
    assert summary["duration_seconds"] == 2.0 and "chmod +x" in summary["exit_hint"]
    assert summary["banner"] == f"Run {run_id} failed."
    assert summary["published_files_note"].startswith("None: only a successful run")


def test_a_scheduled_run_has_no_duration_yet(app, client):
    post_job(client)
    run_id = _add_run(app, get_job(app, "weekly-report"), state="scheduled")
    summary = client.get(f"/runs/{run_id}/log.json").get_json()
    assert summary["started_at"] is None and summary["duration_seconds"] is None
    assert summary["scheduled_for"] == "2024-05-01T12:00:00+00:00"
    assert summary["published_files_note"].startswith("None yet")


def test_job_page_links_published_files_only_once_there_are_some(app, client, settings):
    post_job(client)
    page = client.get("/jobs/weekly-report").get_data(as_text=True)
    assert 'href="/public/weekly-report/data/"' not in page  # was a dead link to a 404
    assert "nothing published yet" in page
    open_store(settings.public_url).put("weekly-report/data/result.txt", b"42\n")
    page = client.get("/jobs/weekly-report").get_data(as_text=True)
    assert 'href="/public/weekly-report/data/"' in page
