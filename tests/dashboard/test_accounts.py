"""Verified sign-up and password reset by mailed link, through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest

from dashboard import create_app
from tests.support.dashboard import (
    CSRF_RE,
    PASSWORD,
    add_user,
    choose_password,
    csrf_token,
    link_path,
    mailed_link,
    sign_in,
    sign_out,
)
from tests.support.waiting import wait_for


@pytest.fixture
def app_settings(settings, smtp_server):
    return dataclasses.replace(settings, smtp_url=smtp_server.url)


@pytest.fixture
def app_config() -> dict:
    return {"SIGNUP_DOMAINS": "example.org, mozilla.test"}


def ask_for_link(client, url: str, email: str, base_url: str = "http://localhost/"):
    html = client.get(url, base_url=base_url).get_data(as_text=True)
    match = CSRF_RE.search(html)
    token = match.group(1) or match.group(2)
    return client.post(url, data={"email": email, "csrf_token": token}, base_url=base_url)


def user_exists(app, email: str) -> bool:
    from dashboard import database
    from dashboard.users import find_user

    with app.app_context():
        return find_user(database.db(), email) is not None


def visible_text(response) -> str:
    """The page without what differs per request (CSRF token) or echoes the input."""
    html = response.get_data(as_text=True)
    return re.sub(r'value="[^"]*"', "", html)


def test_typing_an_allowed_address_gives_no_account_until_the_mailed_link_is_followed(
    app, client, smtp_server
):
    response = ask_for_link(client, "/signup", "CEO@Example.ORG")
    assert response.status_code == 200
    assert "Check your mail" in response.get_data(as_text=True)
    assert not user_exists(app, "ceo@example.org")
    assert client.get("/jobs").status_code == 302  # not signed in
    assert "Wrong email or password." in sign_in(client, "ceo@example.org").get_data(as_text=True)

    (message,) = smtp_server.wait_for(1)
    assert message["X-Envelope-To"] == "ceo@example.org"
    link = mailed_link(message)
    assert link.startswith("http://127.0.0.1:5000/account/link/")  # TELEMETRY_PUBLIC_BASE_URL
    response = choose_password(client, link_path(link))
    assert response.status_code == 302
    assert client.get("/jobs").status_code == 200
    assert user_exists(app, "ceo@example.org")

    sign_out(client)
    assert sign_in(client, "CEO@example.org").status_code == 302


def test_a_link_works_once(app, client, smtp_server):
    ask_for_link(client, "/signup", "bob@mozilla.test")
    path = link_path(mailed_link(smtp_server.wait_for(1)[0]))
    assert choose_password(client, path).status_code == 302
    sign_out(client)
    response = client.get(path)
    assert response.status_code == 400
    assert "already used" in response.get_data(as_text=True)


def test_a_forged_or_expired_link_is_refused(app, client, monkeypatch):
    from itsdangerous import TimestampSigner

    from dashboard import account_links

    with app.app_context():
        key = app.config["SECRET_KEY"]
    forged = account_links.make_token("not the key", "bob@mozilla.test", None)
    response = client.get(f"/account/link/{forged}")
    assert response.status_code == 400
    assert "not valid" in response.get_data(as_text=True)

    two_days_ago = int(time.time()) - 2 * 86400
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: two_days_ago)
    old = account_links.make_token(key, "bob@mozilla.test", None)
    monkeypatch.undo()
    response = client.get(f"/account/link/{old}")
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)
    assert not user_exists(app, "bob@mozilla.test")


def test_the_domain_rule_applies_to_the_proved_address(app, client):
    """A correctly signed link for an address outside the allowed domains makes no account
    (say the domains were narrowed after the mail went out)."""
    from dashboard import account_links

    token = account_links.make_token(app.config["SECRET_KEY"], "eve@elsewhere.com", None)
    response = client.get(f"/account/link/{token}")
    assert response.status_code == 400
    assert not user_exists(app, "eve@elsewhere.com")


def test_signup_refuses_other_domains_without_sending_mail(app, client, smtp_server):
    response = ask_for_link(client, "/signup", "eve@elsewhere.com")
    assert "open to addresses at" in response.get_data(as_text=True)
    ask_for_link(client, "/signup", "ok@example.org")  # a later, allowed one: the only mail
    messages = smtp_server.wait_for(1)
    assert [m["X-Envelope-To"] for m in messages] == ["ok@example.org"]


def test_signup_answers_the_same_for_an_existing_account(app, client, smtp_server):
    add_user(app, "ada@example.org")
    existing = ask_for_link(client, "/signup", "ada@example.org")
    new = ask_for_link(client, "/signup", "ida@example.org")
    assert existing.status_code == new.status_code == 200
    assert visible_text(existing).replace("ada@", "X@") == visible_text(new).replace("ida@", "X@")
    assert "already exists" not in existing.get_data(as_text=True)
    # The owner of the existing account is told by mail, not the person at the keyboard.
    messages = {m["X-Envelope-To"]: m for m in smtp_server.wait_for(2)}
    assert "new password" in messages["ada@example.org"]["Subject"]
    assert "Confirm your address" in messages["ida@example.org"]["Subject"]


def test_reset_answers_the_same_whether_or_not_the_account_exists(app, client, smtp_server):
    add_user(app, "ada@example.org")
    unknown = ask_for_link(client, "/reset", "nobody@example.org")
    known = ask_for_link(client, "/reset", "ada@example.org")
    assert unknown.status_code == known.status_code == 200
    assert visible_text(unknown).replace("nobody@", "X@") == visible_text(known).replace(
        "ada@", "X@"
    )
    (message,) = smtp_server.wait_for(1)
    assert message["X-Envelope-To"] == "ada@example.org"


def test_password_reset_by_link_sets_the_password_and_ends_old_sessions(app, client, smtp_server):
    add_user(app, "ada@example.org")
    laptop = app.test_client()
    sign_in(laptop, "ada@example.org")
    assert laptop.get("/jobs").status_code == 200

    ask_for_link(client, "/reset", "ADA@example.org")
    path = link_path(mailed_link(smtp_server.wait_for(1)[0]))
    assert choose_password(client, path, "a brand new password").status_code == 302
    assert client.get("/jobs").status_code == 200
    assert laptop.get("/jobs").status_code == 302  # the old session is over
    sign_out(client)
    assert sign_in(client, "ada@example.org").status_code == 200  # old password refused
    assert sign_in(client, "ada@example.org", "a brand new password").status_code == 302


def test_the_link_is_built_on_the_public_base_url_not_the_host_header(app, client, smtp_server):
    ask_for_link(client, "/reset", "nobody@example.org")
    add_user(app, "ada@example.org")
    ask_for_link(client, "/reset", "ada@example.org", base_url="http://evil.example/")
    link = mailed_link(smtp_server.wait_for(1)[0])
    assert "evil.example" not in link


def test_without_smtp_the_link_is_written_to_the_log(settings, caplog):
    app = create_app(settings, {"SIGNUP_DOMAINS": "example.org"})
    client = app.test_client()
    with caplog.at_level("INFO", logger="pipeline.mail"):
        ask_for_link(client, "/signup", "new@example.org")
        # the mail is sent by a background thread after the answer
        wait_for(lambda: "/account/link/" in caplog.text, 10, "the link in the log")


def test_change_password_needs_the_current_one_and_ends_other_sessions(app, client):
    add_user(app, "ada@example.org")
    other = app.test_client()
    sign_in(other, "ada@example.org")
    sign_in(client, "ada@example.org")
    token = csrf_token(client, "/account/password")
    wrong = client.post(
        "/account/password",
        data={
            "current": "nope",
            "password": "new password!",
            "confirm": "new password!",
            "csrf_token": token,
        },
    )
    assert "not your current password" in wrong.get_data(as_text=True)
    assert other.get("/jobs").status_code == 200
    response = client.post(
        "/account/password",
        data={
            "current": PASSWORD,
            "password": "new password!",
            "confirm": "new password!",
            "csrf_token": token,
        },
    )
    assert response.status_code == 302
    assert client.get("/jobs").status_code == 200  # this browser stays signed in
    assert other.get("/jobs").status_code == 302
