"""The JSON API: bearer tokens, the same permission rules as the pages, and every operation."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from sqlalchemy import select

from dashboard import create_app, database
from dashboard.api_tokens import create_token
from dashboard.models import ApiToken, User, Worker
from scheduler.models import Job, Run
from tests.support.dashboard import add_user, count, csrf_token, job_form, sign_in
from tests.support.tarballs import make_tarball


@pytest.fixture
def app_users() -> dict[str, bool]:
    return {"ada@example.org": False, "bob@example.org": False, "root@example.org": True}


def token_for(app, email: str) -> dict:
    with app.app_context():
        user = database.db().scalar(select(User).where(User.email == email))
        _token, secret = create_token(database.db(), user, "test")
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def ada(app):
    return token_for(app, "ada@example.org")


@pytest.fixture
def bob(app):
    return token_for(app, "bob@example.org")


def create(client, headers, **overrides):
    data = job_form(**overrides)
    data["tarball"] = (io.BytesIO(make_tarball()), "code.tar.gz")
    return client.post("/api/jobs", data=data, headers=headers, content_type="multipart/form-data")


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer tpd_wrong", "Basic YWRhOnB3", "Token abc"]
)
def test_requests_without_a_valid_token_are_401(app, header):
    headers = {"Authorization": header} if header else {}
    response = app.test_client().get("/api/jobs", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["error"] == "unauthorized"


def test_a_session_cookie_does_not_authenticate_the_api(app):
    client = app.test_client()
    sign_in(client, "ada@example.org")
    assert client.get("/api/jobs").status_code == 401


def test_create_list_show_update_delete_a_job(app, ada):
    client = app.test_client()
    response = create(client, ada, frequency="weekly", day_of_week="4")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["job"]["day_of_week"] == 4
    jobs = client.get("/api/jobs", headers=ada).get_json()["jobs"]
    assert [j["name"] for j in jobs] == ["weekly-report"]
    assert jobs[0]["next_run"].endswith("+00:00") and jobs[0]["last_state"] is None
    response = client.patch(
        "/api/jobs/weekly-report", json={"hour": 5, "enabled": False}, headers=ada
    )
    assert response.status_code == 200
    job = client.get("/api/jobs/weekly-report", headers=ada).get_json()["job"]
    assert (job["hour"], job["enabled"], job["frequency"], job["day_of_week"]) == (
        5,
        False,
        "weekly",
        4,
    )
    assert client.delete("/api/jobs/weekly-report", headers=ada).status_code == 204
    assert count(app, Job) == 0


def test_a_deleted_jobs_name_cannot_be_taken_by_another_user_until_an_admin_releases_it(
    app, ada, bob
):
    """Otherwise bob would serve his output at ada's old public URL."""
    client = app.test_client()
    assert create(client, ada).status_code == 201
    assert client.delete("/api/jobs/weekly-report", headers=ada).status_code == 204
    response = create(client, bob)
    assert response.status_code == 400
    assert "an admin can release it" in response.get_json()["errors"]["name"]
    browser = app.test_client()
    sign_in(browser, "bob@example.org")
    live = browser.get("/jobs/new/check-name?name=weekly-report").get_json()
    assert live["ok"] is False and "deleted job" in live["message"]
    release = "/api/reserved-names/weekly-report/release"
    assert client.post(release, headers=bob).status_code == 403
    root = token_for(app, "root@example.org")
    assert client.post(release, headers=root).status_code == 204
    assert client.post(release, headers=root).status_code == 404
    assert create(client, bob).status_code == 201


def test_create_with_bad_fields_is_400_with_field_errors(app, ada):
    client = app.test_client()
    response = create(client, ada, name="bad name", hour="25")
    assert response.status_code == 400
    assert set(response.get_json()["errors"]) >= {"name", "hour"}
    data = job_form()
    data["tarball"] = (io.BytesIO(make_tarball(unsafe="../x")), "code.tar.gz")
    response = client.post("/api/jobs", data=data, headers=ada, content_type="multipart/form-data")
    assert response.status_code == 400 and "tarball" in response.get_json()["errors"]
    assert count(app, Job) == 0


def test_update_with_bad_or_unknown_fields_is_400_and_changes_nothing(app, ada):
    client = app.test_client()
    create(client, ada)
    assert (
        client.patch("/api/jobs/weekly-report", json={"hour": 99}, headers=ada).status_code == 400
    )
    assert client.patch(
        "/api/jobs/weekly-report", json={"frequency": "monthly"}, headers=ada
    ).get_json()["errors"].keys() == {"day_of_month"}
    assert (
        client.patch(
            "/api/jobs/weekly-report", json={"owner": "bob@example.org"}, headers=ada
        ).status_code
        == 400
    )
    assert client.patch("/api/jobs/weekly-report", data="nonsense", headers=ada).status_code == 400
    job = client.get("/api/jobs/weekly-report", headers=ada).get_json()["job"]
    assert (job["hour"], job["frequency"], job["owner"]) == (12, "daily", "ada@example.org")


def test_run_now_and_runs_listing(app, ada):
    client = app.test_client()
    create(client, ada)
    response = client.post("/api/jobs/weekly-report/run-now", headers=ada)
    assert response.status_code == 202
    run = response.get_json()["run"]
    assert (run["state"], run["trigger"], run["job"]) == ("scheduled", "manual", "weekly-report")
    runs = client.get("/api/runs?job=weekly-report", headers=ada).get_json()["runs"]
    assert [r["id"] for r in runs] == [run["id"]]
    detail = client.get(f"/api/runs/{run['id']}?log=1", headers=ada).get_json()["run"]
    assert "not started" in detail["log"]
    cancelled = client.post(f"/api/runs/{run['id']}/cancel", headers=ada)
    assert cancelled.status_code == 202
    assert client.post(f"/api/runs/{run['id']}/cancel", headers=ada).status_code == 409
    # Times as the jobs and workers give them: ISO 8601 (was "2026-12-06 16:56:22 UTC" and "—").
    done = client.get(f"/api/runs/{run['id']}", headers=ada).get_json()["run"]
    for key in ("scheduled_for", "finished_at"):
        assert dt.datetime.fromisoformat(done[key]).utcoffset() == dt.timedelta(0), done[key]
    assert done["started_at"] is None and done["duration_seconds"] is None  # never started
    job = client.get("/api/jobs/weekly-report", headers=ada).get_json()["job"]
    assert dt.datetime.fromisoformat(job["next_run"]).utcoffset() == dt.timedelta(0)


def test_other_users_jobs_and_runs_are_404_and_invisible(app, ada, bob):
    client = app.test_client()
    create(client, ada)
    run_id = client.post("/api/jobs/weekly-report/run-now", headers=ada).get_json()["run"]["id"]
    assert client.get("/api/jobs", headers=bob).get_json()["jobs"] == []
    assert client.get("/api/runs", headers=bob).get_json()["runs"] == []
    assert client.get("/api/jobs/weekly-report", headers=bob).status_code == 404
    assert client.patch("/api/jobs/weekly-report", json={"hour": 1}, headers=bob).status_code == 404
    assert client.delete("/api/jobs/weekly-report", headers=bob).status_code == 404
    assert client.post("/api/jobs/weekly-report/run-now", headers=bob).status_code == 404
    assert client.get(f"/api/runs/{run_id}", headers=bob).status_code == 404
    assert client.get("/api/runs?job=weekly-report", headers=bob).status_code == 404
    assert client.post(f"/api/runs/{run_id}/cancel", headers=bob).get_json()["error"] == "not_found"
    with app.app_context():
        assert database.db().scalar(select(Run.state)) == "scheduled"
    admin = token_for(app, "root@example.org")
    assert [j["name"] for j in client.get("/api/jobs", headers=admin).get_json()["jobs"]] == [
        "weekly-report"
    ]


def test_workers_through_the_api(app, ada, bob):
    from tests.support.dashboard import public_key

    client = app.test_client()
    response = client.post(
        "/api/workers", json={"name": "scratch", "ssh_public_key": public_key()}, headers=ada
    )
    assert response.status_code == 201
    worker = response.get_json()["worker"]
    assert worker["state"] == "running" and worker["connect_command"].startswith("ssh -p ")
    assert client.post(
        "/api/workers", json={"name": "x", "ssh_public_key": "ssh-rsa AAAA"}, headers=ada
    ).get_json()["errors"].keys() == {"ssh_public_key"}
    assert client.get("/api/workers", headers=bob).get_json()["workers"] == []
    assert client.post(f"/api/workers/{worker['id']}/kill", headers=bob).status_code == 404
    extended = client.post(f"/api/workers/{worker['id']}/extend", headers=ada).get_json()["worker"]
    assert extended["expires_at"] > worker["expires_at"]
    killed = client.post(f"/api/workers/{worker['id']}/kill", headers=ada).get_json()["worker"]
    assert killed["state"] == "terminated"
    assert client.post(f"/api/workers/{worker['id']}/extend", headers=ada).status_code == 409
    assert count(app, Worker) == 1


def test_token_page_creates_shows_once_and_revokes(app):
    client = app.test_client()
    sign_in(client, "ada@example.org")
    html = client.post(
        "/account/tokens",
        data={"label": "laptop", "csrf_token": csrf_token(client, "/account/tokens")},
    ).get_data(as_text=True)
    import re

    secret = re.search(r'<code id="new-token">([^<]+)</code>', html).group(1)
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/jobs", headers=headers).status_code == 200
    assert secret not in client.get("/account/tokens").get_data(as_text=True)
    with app.app_context():
        token = database.db().scalar(select(ApiToken).where(ApiToken.label == "laptop"))
        assert token.token_hash != secret and token.last_used_at is not None
    assert client.post(f"/account/tokens/{token.id}/revoke").status_code == 400
    other = app.test_client()
    sign_in(other, "bob@example.org")
    assert (
        other.post(
            f"/account/tokens/{token.id}/revoke",
            data={"csrf_token": csrf_token(other, "/account/tokens")},
        ).status_code
        == 404
    )
    client.post(
        f"/account/tokens/{token.id}/revoke",
        data={"csrf_token": csrf_token(client, "/account/tokens")},
    )
    assert client.get("/api/jobs", headers=headers).status_code == 401


def test_token_label_is_required(app):
    client = app.test_client()
    sign_in(client, "ada@example.org")
    html = client.post(
        "/account/tokens", data={"label": "", "csrf_token": csrf_token(client, "/account/tokens")}
    ).get_data(as_text=True)
    assert 'id="field-label"' in html and "required" in html
    assert count(app, ApiToken) == 0


def test_jobs_made_through_the_api_run_where_the_operator_configured(data_dir, monkeypatch):
    from pipeline.config import load_settings

    monkeypatch.setenv("TELEMETRY_RUNNER", "ec2")
    settings = load_settings()
    app = create_app(settings)
    add_user(app, "ada@example.org")
    headers = token_for(app, "ada@example.org")
    client = app.test_client()
    response = create(client, headers, runner="local")  # not the user's choice
    assert response.status_code == 201, response.get_json()
    with app.app_context():
        job = database.db().scalar(select(Job).where(Job.name == "weekly-report"))
        assert job.runner == settings.runner == "ec2"
    assert response.get_json()["job"]["runner"] == "ec2"
    refused = client.patch("/api/jobs/weekly-report", json={"runner": "local"}, headers=headers)
    assert refused.status_code == 400 and "runner" in refused.get_json()["errors"]
