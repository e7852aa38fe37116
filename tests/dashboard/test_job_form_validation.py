"""Bad input on every field of the "Schedule a Job" form: an inline error, and nothing changes
(no job row, no stored tarball; an edit leaves the job as it was)."""

from __future__ import annotations

import gzip
import html
import io
import random
import re
import tarfile

import pytest
from sqlalchemy import select

from dashboard import create_app, database
from pipeline.config import load_settings
from pipeline.stores import open_store
from scheduler.models import Job
from tests.support.dashboard import add_user, count, post_job, sign_in
from tests.support.tarballs import cve_2025_4517_tarball, make_tarball

LIMITS = {"TARBALL_MAX_BYTES": 4096}


def _declares_4gib() -> bytes:
    """A few hundred bytes of gzip whose only member's header declares 4 GiB."""
    info = tarfile.TarInfo("huge.bin")
    info.size = 4 * 1024**3
    return gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + bytes(100_000))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One app for the many refused submissions: each test checks that nothing was stored."""
    settings = load_settings(
        env={"TELEMETRY_DATA_DIR": str(tmp_path_factory.mktemp("refusals") / "var")}
    )
    app = create_app(settings, LIMITS)
    add_user(app, "ada@example.org")
    client = app.test_client()
    sign_in(client, "ada@example.org")
    return app, client, settings


@pytest.fixture
def app_config() -> dict:
    return LIMITS


@pytest.fixture
def app_users() -> dict[str, bool]:
    return {"ada@example.org": False}


@pytest.fixture
def signed_in_as() -> str:
    return "ada@example.org"


def field_errors(html: str, field: str) -> list[str]:
    block = re.search(rf'<div class="field has-error" id="field-{field}">(.*?)</div>', html, re.S)
    assert block, f"no inline error on {field}"
    return re.findall(r'<p class="error" role="alert">(.*?)</p>', block.group(1), re.S)


def assert_nothing_stored(app, settings):
    assert count(app, Job) == 0
    assert list(open_store(settings.code_url).list("")) == []


def _tar_with_only(member: str, data: bytes = b"x") -> bytes:
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


CASES = [
    # (field, overrides, expected fragment of the message)
    ("name", {"name": ""}, "Enter a job name"),
    ("name", {"name": "x" * 101}, "100"),
    ("name", {"name": "has space"}, "letters, digits"),
    ("name", {"name": "../etc"}, "letters, digits"),
    ("name", {"name": "new"}, "reserved"),
    ("command", {"command": ""}, "Enter the command line"),
    ("command", {"command": "x" * 2001}, "2000"),
    ("output_dir", {"output_dir": ""}, "Enter the output directory"),
    ("output_dir", {"output_dir": "x" * 501}, "500"),
    ("output_dir", {"output_dir": "../outside"}, ".."),
    ("output_dir", {"output_dir": "/abs/path"}, "relative"),
    ("frequency", {"frequency": "yearly"}, "daily, weekly or monthly"),
    ("frequency", {"frequency": ""}, ""),
    ("day_of_week", {"frequency": "weekly", "day_of_week": ""}, "day of the week"),
    ("day_of_week", {"frequency": "weekly", "day_of_week": "9"}, "day of the week"),
    ("day_of_week", {"frequency": "weekly", "day_of_week": "monday"}, ""),
    ("day_of_month", {"frequency": "monthly", "day_of_month": ""}, "day of the month"),
    ("day_of_month", {"frequency": "monthly", "day_of_month": "32"}, "between 1 and 31"),
    ("day_of_month", {"frequency": "monthly", "day_of_month": "0"}, "between 1 and 31"),
    ("day_of_month", {"frequency": "monthly", "day_of_month": "first"}, "between 1 and 31"),
    ("hour", {"hour": "24"}, "0-23"),
    ("hour", {"hour": "noon"}, ""),
    ("timeout_minutes", {"timeout_minutes": ""}, "minutes"),
    ("timeout_minutes", {"timeout_minutes": "0"}, "1 and 1440"),
    ("timeout_minutes", {"timeout_minutes": "100000"}, "1 and 1440"),
    ("timeout_minutes", {"timeout_minutes": "ten"}, "whole number"),
    ("end_date", {"end_date": "next tuesday"}, "date"),
]


@pytest.mark.parametrize(
    ("field", "overrides", "message"),
    CASES,
    ids=[f"{c[0]}:{list(c[1].values())[-1][:12]!r}" for c in CASES],
)
def test_bad_field_gives_inline_error_and_stores_nothing(
    app, client, settings, field, overrides, message
):
    response = post_job(client, **overrides)
    assert response.status_code == 200
    errors = field_errors(response.get_data(as_text=True), field)
    assert any(message.lower() in e.lower() for e in errors), errors
    assert_nothing_stored(app, settings)


TARBALLS = [
    ("not gzip", b"just some text, not an archive", "code.tar.gz", "not a gzip"),
    (
        "gzip but not tar",
        gzip.compress(b"plain text inside gzip" * 30),
        "code.tar.gz",
        "tar archive",
    ),
    ("parent path", make_tarball(unsafe="../escape.sh"), "code.tar.gz", ".."),
    ("nested parent path", make_tarball(unsafe="a/../../escape.sh"), "code.tgz", ".."),
    ("absolute path", _tar_with_only("/etc/cron.d/evil"), "code.tar.gz", "absolute"),
    (
        "symlink outside",
        make_tarball(symlink=("link", "../../etc/passwd")),
        "code.tar.gz",
        "symbolic link",
    ),
    ("wrong extension", make_tarball(), "code.zip", ".tar.gz or .tgz"),
    (
        "too large",
        make_tarball({"big.bin": random.Random(0).randbytes(8192)}),
        "code.tar.gz",
        "limit",
    ),
    ("empty file", b"", "code.tar.gz", "empty"),
    ("cve-2025-4517 link chain", cve_2025_4517_tarball(), "code.tar.gz", "symbolic link"),
    ("4 GiB declared member", _declares_4gib(), "code.tar.gz", "expands to more than"),
]


@pytest.mark.parametrize(
    ("case", "data", "filename", "message"), TARBALLS, ids=[t[0] for t in TARBALLS]
)
def test_bad_tarball_gives_inline_error_and_stores_nothing(
    app, client, settings, case, data, filename, message
):
    response = post_job(client, tarball=data, filename=filename)
    assert response.status_code == 200
    errors = field_errors(response.get_data(as_text=True), "tarball")
    assert any(message.lower() in e.lower() for e in errors), errors
    assert_nothing_stored(app, settings)


def test_missing_tarball_gives_inline_error(app, client, settings):
    response = post_job(client, tarball=False)
    assert any(
        "Upload the code tarball" in e
        for e in field_errors(response.get_data(as_text=True), "tarball")
    )
    assert_nothing_stored(app, settings)


def test_duplicate_name_gives_inline_error_and_keeps_the_first_job(app, client, settings):
    assert post_job(client, command="first").status_code == 302
    keys_before = [o.key for o in open_store(settings.code_url).list("")]
    response = post_job(
        client, command="second", tarball=make_tarball({"other.sh": "echo other\n"})
    )
    assert any("already exists" in e for e in field_errors(response.get_data(as_text=True), "name"))
    assert count(app, Job) == 1
    with app.app_context():
        assert database.db().scalar(select(Job.command)) == "first"
    assert [o.key for o in open_store(settings.code_url).list("")] == keys_before


def test_bad_edit_changes_nothing(app, client, settings):
    post_job(client)
    with app.app_context():
        before = database.db().scalar(select(Job))
        snapshot = (before.command, before.hour, before.tarball_key, before.frequency)
    keys_before = [o.key for o in open_store(settings.code_url).list("")]
    response = post_job(
        client,
        url="/jobs/weekly-report",
        tarball=make_tarball(unsafe="../x"),
        command="changed",
        hour="3",
    )
    assert response.status_code == 200
    assert field_errors(response.get_data(as_text=True), "tarball")
    response = post_job(client, url="/jobs/weekly-report", tarball=False, command="", hour="3")
    assert field_errors(response.get_data(as_text=True), "command")
    response = post_job(
        client, url="/jobs/weekly-report", tarball=False, frequency="monthly", day_of_month="40"
    )
    assert field_errors(response.get_data(as_text=True), "day_of_month")
    with app.app_context():
        after = database.db().scalar(select(Job))
        assert (after.command, after.hour, after.tarball_key, after.frequency) == snapshot
    assert [o.key for o in open_store(settings.code_url).list("")] == keys_before


def test_request_over_the_hard_limit_is_413(app, client):
    response = post_job(client, tarball=b"\x1f\x8b" + bytes(2 * 1024 * 1024))
    assert response.status_code == 413
    assert count(app, Job) == 0


@pytest.mark.parametrize("name", ["my report", "x" * 101, "naïve"])
def test_a_bad_name_is_one_error_worded_as_the_live_check_says_it(app, client, name):
    """Before: "Use letters, digits, '-' and '_' only." beside the live check's longer wording,
    and a separate "Field cannot be longer than 100 characters." for a long name."""
    from dashboard.forms import NAME_RULE_MESSAGE

    response = post_job(client, name=name)
    errors = field_errors(response.get_data(as_text=True), "name")
    assert [html.unescape(e) for e in errors] == [NAME_RULE_MESSAGE]
    live = client.get("/jobs/new/check-name", query_string={"name": name}).get_json()
    assert live == {"ok": False, "message": NAME_RULE_MESSAGE}
    assert "at most 100 characters" in NAME_RULE_MESSAGE


def test_a_good_tarball_must_be_chosen_again_and_the_form_says_so(app, client):
    response = post_job(client, filename="analysis.tar.gz", timeout_minutes="0")
    errors = field_errors(response.get_data(as_text=True), "tarball")
    assert len(errors) == 1 and "Choose analysis.tar.gz again" in errors[0]


def test_a_refused_tarball_keeps_only_its_own_error(app, client):
    response = post_job(client, tarball=b"not a tarball", filename="bad.tar.gz")
    errors = field_errors(response.get_data(as_text=True), "tarball")
    assert len(errors) == 1 and "again" not in errors[0]


def test_worker_and_command_help_state_their_rules(app, client):
    html_text = client.get("/workers").get_data(as_text=True)
    assert "at most 100 characters; no spaces" in html.unescape(html_text)
    new = html.unescape(client.get("/jobs/new").get_data(as_text=True))
    assert "chmod +x" in new
