"""The dashboard-facing job API: validation with per-field errors, CRUD, run now, tarball upload."""

from __future__ import annotations

import datetime as dt
import io
import tarfile

import pytest

from pipeline.db import init_db
from pipeline.stores import open_store
from scheduler import (
    JobValidationError,
    TarballError,
    cancel_run,
    create_job,
    delete_job,
    next_run_time,
    request_run_now,
    store_tarball,
    update_job,
)
from scheduler.models import Job, Run, RunState

VALID = dict(
    name="weekly-report",
    owner="ana@example.com",
    tarball_key="weekly-report/abc.tar.gz",
    command="python run.py",
    output_dir="output",
    frequency="weekly",
    day_of_week=0,
    hour=6,
)


def test_create_job_stores_every_field(session):
    job = create_job(session, **VALID, timeout_minutes=15, end_date=dt.datetime(2030, 1, 1))
    stored = session.get(Job, job.id)
    assert (stored.frequency, stored.day_of_week, stored.day_of_month, stored.hour) == (
        "weekly",
        0,
        None,
        6,
    )
    assert stored.timeout_minutes == 15 and stored.enabled and stored.runner == "local"
    assert next_run_time(stored, dt.datetime(2024, 5, 1)) == dt.datetime(
        2024, 5, 6, 6, tzinfo=dt.UTC
    )


def test_every_invalid_field_is_reported_at_once(session):
    with pytest.raises(JobValidationError) as caught:
        create_job(
            session,
            name="has space",
            owner="nobody",
            tarball_key="",
            command=" ",
            output_dir="../up",
            frequency="hourly",
            hour=24,
            timeout_minutes=0,
        )
    assert set(caught.value.errors) == {
        "name",
        "owner",
        "tarball_key",
        "command",
        "output_dir",
        "frequency",
        "hour",
        "timeout_minutes",
    }
    assert "0-23" in caught.value.errors["hour"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (dict(frequency="weekly", day_of_week=None), "day_of_week"),
        (dict(frequency="weekly", day_of_week=7), "day_of_week"),
        (dict(frequency="monthly", day_of_month=32), "day_of_month"),
        (dict(frequency="monthly", day_of_month=None), "day_of_month"),
        (dict(output_dir="/abs"), "output_dir"),
        (dict(runner="lambda"), "runner"),
        # "$" in a pattern also accepts a final newline, which then reaches shell scripts
        # (the EC2 user-data) and mail headers.
        (dict(name="summary\n"), "name"),
    ],
)
def test_schedule_fields_are_checked(session, fields, field):
    with pytest.raises(JobValidationError) as caught:
        create_job(session, **{**VALID, **fields})
    assert set(caught.value.errors) == {field}


def test_duplicate_name_is_a_field_error(session):
    create_job(session, **VALID)
    with pytest.raises(JobValidationError) as caught:
        create_job(session, **VALID)
    assert "already exists" in caught.value.errors["name"]


def test_update_validates_the_result_and_delete_removes_runs(session):
    job = create_job(session, **VALID)
    update_job(session, job, frequency="monthly", day_of_month=31, hour=0)
    assert (job.frequency, job.day_of_week, job.day_of_month) == ("monthly", None, 31)
    with pytest.raises(JobValidationError):
        update_job(session, job, hour=-1)
    request_run_now(session, job)
    delete_job(session, job)
    assert session.query(Run).count() == 0


def test_run_now_queues_a_manual_run_and_cancel_stops_it(session):
    job = create_job(session, **VALID)
    first, second = request_run_now(session, job), request_run_now(session, job)
    assert first.id != second.id
    assert first.state == RunState.scheduled.value and first.trigger == "manual"
    cancel_run(session, first)
    assert first.state == RunState.cancelled.value and first.cancel_requested


def _tar(name: str, data: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_store_tarball_puts_it_in_the_code_store_under_a_content_key(settings):
    data = _tar("run.py")
    key = store_tarball(settings, "weekly-report", data)
    assert key.startswith("weekly-report/") and key.endswith(".tar.gz")
    assert open_store(settings.code_url).get(key) == data
    assert store_tarball(settings, "weekly-report", data) == key  # same content, same key


def test_store_tarball_refuses_unsafe_archives(settings):
    with pytest.raises(TarballError, match="contains '..'"):
        store_tarball(settings, "weekly-report", _tar("../evil"))
    with pytest.raises(TarballError, match="not a gzip file"):
        store_tarball(settings, "weekly-report", b"plain text")
    assert list(open_store(settings.code_url).list("")) == []


def test_a_deleted_jobs_name_stays_reserved_to_its_owner_until_an_admin_releases_it(session):
    """Otherwise another user could take over the deleted job's public URL."""
    from scheduler.jobs import release_job_name

    job = create_job(session, **VALID)
    owner = job.owner
    delete_job(session, job)
    with pytest.raises(JobValidationError) as caught:
        create_job(session, **{**VALID, "owner": "mallory@example.com"})
    assert "an admin can release it" in caught.value.errors["name"]
    again = create_job(session, **VALID)  # the owner gets the name back
    assert again.owner == owner
    delete_job(session, again)
    assert release_job_name(session, VALID["name"]) is True
    assert create_job(session, **{**VALID, "owner": "mallory@example.com"}).owner == (
        "mallory@example.com"
    )
    assert release_job_name(session, "never-reserved") is False


def test_a_renamed_jobs_old_name_stays_reserved_too(session):
    job = create_job(session, **VALID)
    update_job(session, job, name="renamed")
    with pytest.raises(JobValidationError):
        create_job(session, **{**VALID, "owner": "mallory@example.com"})


def test_owner_is_admin_reads_the_dashboards_users(session):
    """Only admins' jobs may run unsandboxed where no sandbox can be set up."""
    from dashboard.models import User
    from scheduler.jobs import owner_is_admin

    init_db(session.get_bind())  # now with the dashboard's tables
    session.add_all(
        [
            User(email="root@example.com", password_hash="x", is_admin=True),
            User(email="ana@example.com", password_hash="x", is_admin=False),
        ]
    )
    session.commit()
    assert owner_is_admin(session, "root@example.com") is True
    assert owner_is_admin(session, "ana@example.com") is False
    assert owner_is_admin(session, "nobody@example.com") is False
