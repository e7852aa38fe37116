"""The same bad job field gets the same message from the "Schedule a Job" form, the JSON API
(create and update) and `python -m scheduler add`: all three ask scheduler.job_spec.

Before, four layers checked jobs with their own words ("Between 1 and 1440 minutes." on the
form, "timeout must be 1-1440 minutes" from the CLI), and a job named "new", refused on the
dashboard, could be created from the command line."""

from __future__ import annotations

import html
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from dashboard import database
from dashboard.api_tokens import create_token
from dashboard.models import User
from scheduler.job_spec import OWNER_FIELDS
from scheduler.models import Job
from tests.support.dashboard import count, job_form, post_job
from tests.support.tarballs import make_tarball

ROOT = Path(__file__).resolve().parents[2]

CASES = [
    # (field, the bad submission's fields)
    ("name", {"name": "bad name"}),
    ("name", {"name": "new"}),
    ("timeout_minutes", {"timeout_minutes": "100000"}),
    ("timeout_minutes", {"timeout_minutes": "ten"}),
    ("hour", {"hour": "25"}),
    ("frequency", {"frequency": "yearly"}),
    ("day_of_week", {"frequency": "weekly", "day_of_week": "8"}),
    ("day_of_month", {"frequency": "monthly", "day_of_month": "32"}),
    ("output_dir", {"output_dir": "../up"}),
    ("end_date", {"end_date": "next tuesday"}),
]


@pytest.fixture
def app_users() -> dict[str, bool]:
    return {"ada@example.org": False}


@pytest.fixture
def signed_in_as() -> str:
    return "ada@example.org"


@pytest.fixture
def browser(client):
    return client


@pytest.fixture
def token(app) -> dict:
    with app.app_context():
        user = database.db().scalar(select(User).where(User.email == "ada@example.org"))
        _token, secret = create_token(database.db(), user, "test")
    return {"Authorization": f"Bearer {secret}"}


def form_error(response, field: str) -> str:
    page = response.get_data(as_text=True)
    block = re.search(rf'<div class="field has-error" id="field-{field}">(.*?)</div>', page, re.S)
    assert block, f"no inline error on {field}"
    errors = re.findall(r'<p class="error" role="alert">(.*?)</p>', block.group(1), re.S)
    assert len(errors) == 1, errors
    return html.unescape(errors[0])


def api_create_error(client, headers: dict, field: str, overrides: dict) -> str:
    data = job_form(**overrides)
    data["tarball"] = (io.BytesIO(make_tarball()), "code.tar.gz")
    response = client.post(
        "/api/jobs", data=data, headers=headers, content_type="multipart/form-data"
    )
    assert response.status_code == 400, response.get_json()
    return response.get_json()["errors"][field]


def cli_error(tarball: Path, field: str, overrides: dict) -> str:
    options = {"name": "weekly-report", "command": "bash run.sh", "owner": "ada@example.org"}
    options.update(overrides)
    argv = ["add", "--tarball", str(tarball)]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", value]
    result = subprocess.run(
        [sys.executable, "-m", "scheduler", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    prefix = f"error: --{field.replace('_', '-')}: "
    lines = [line for line in result.stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, result.stderr
    return lines[0].removeprefix(prefix)


@pytest.mark.parametrize(
    ("field", "overrides"), CASES, ids=[f"{f}={list(o.values())[-1]}" for f, o in CASES]
)
def test_form_api_and_cli_refuse_a_bad_field_in_the_same_words(
    app, browser, token, tmp_path, field, overrides
):
    from_form = form_error(post_job(browser, **overrides), field)
    from_api = api_create_error(app.test_client(), token, field, overrides)
    tarball = tmp_path / "code.tar.gz"
    tarball.write_bytes(make_tarball())
    from_cli = cli_error(tarball, field, overrides)
    assert from_form == from_api == from_cli
    assert count(app, Job) == 0


@pytest.mark.parametrize(
    ("field", "overrides"),
    [case for case in CASES if case[0] != "name"],
    ids=[f"{f}={list(o.values())[-1]}" for f, o in CASES if f != "name"],
)
def test_editing_on_the_page_and_through_the_api_refuses_in_the_same_words(
    app, browser, token, field, overrides
):
    assert post_job(browser).status_code == 302
    on_page = form_error(
        post_job(browser, url="/jobs/weekly-report", tarball=False, **overrides), field
    )
    response = app.test_client().patch("/api/jobs/weekly-report", json=overrides, headers=token)
    assert response.status_code == 400
    assert response.get_json()["errors"] == {field: on_page}


def test_the_form_shows_the_owner_fields_in_their_one_list_order(browser):
    page = browser.get("/jobs/new").get_data(as_text=True)
    shown = re.findall(r'<div class="field[^"]*" id="field-(\w+)">', page)
    assert shown == ["name", "tarball", *OWNER_FIELDS]
