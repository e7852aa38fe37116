"""Sign-in, sign-out, sign-up domains, session cookie flags, CSRF and the login guard."""

from __future__ import annotations

import pytest

from dashboard import create_app
from tests.support.dashboard import PASSWORD, add_user, csrf_token, sign_in


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/jobs",
        "/jobs/new",
        "/jobs/anything",
        "/runs/1",
        "/workers",
        "/health",
        "/account/tokens",
        "/jobs/new/check-name?name=x",
    ],
)
def test_pages_redirect_to_login_when_signed_out(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_login_page_has_the_contract_fields(client):
    html = client.get("/login").get_data(as_text=True)
    for field in ('name="email"', 'name="password"', 'name="csrf_token"'):
        assert field in html


def test_sign_in_over_plain_http_on_localhost_sets_a_non_secure_session_cookie(app, client):
    add_user(app, "ada@example.org")
    response = sign_in(client, "ada@example.org")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/jobs")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie
    assert client.get("/jobs").status_code == 200


def test_secure_cookie_flag_is_configurable(settings):
    app = create_app(settings, {"SESSION_COOKIE_SECURE": True})  # even on http://localhost
    add_user(app, "ada@example.org")
    response = sign_in(app.test_client(), "ada@example.org")
    assert "Secure" in response.headers["Set-Cookie"]


def test_wrong_password_is_refused_inline(app, client):
    add_user(app, "ada@example.org")
    response = sign_in(client, "ada@example.org", "not the password")
    assert response.status_code == 200
    assert "Wrong email or password." in response.get_data(as_text=True)
    assert client.get("/jobs").status_code == 302


def test_unknown_user_gets_the_same_message(client):
    response = sign_in(client, "nobody@example.org")
    assert "Wrong email or password." in response.get_data(as_text=True)


def test_login_without_csrf_token_is_400(app, client):
    add_user(app, "ada@example.org")
    response = client.post("/login", data={"email": "ada@example.org", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/jobs").status_code == 302


def test_next_parameter_is_followed_only_to_local_paths(app, client):
    add_user(app, "ada@example.org")
    token = csrf_token(client, "/login")
    response = client.post(
        "/login?next=https://evil.example/",
        data={"email": "ada@example.org", "password": PASSWORD, "csrf_token": token},
    )
    assert response.headers["Location"] == "/jobs"
    client.post("/logout", data={"csrf_token": csrf_token(client, "/jobs")})
    token = csrf_token(client, "/login")
    response = client.post(
        "/login?next=/\\evil.example/",
        data={"email": "ada@example.org", "password": PASSWORD, "csrf_token": token},
    )
    assert response.headers["Location"] == "/jobs"
    client.post("/logout", data={"csrf_token": csrf_token(client, "/jobs")})
    token = csrf_token(client, "/login")
    response = client.post(
        "/login?next=/workers",
        data={"email": "ada@example.org", "password": PASSWORD, "csrf_token": token},
    )
    assert response.headers["Location"] == "/workers"


def test_logout_needs_post_with_csrf_and_ends_the_session(app, client):
    add_user(app, "ada@example.org")
    sign_in(client, "ada@example.org")
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/jobs").status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/jobs")})
    assert response.status_code == 302
    assert client.get("/jobs").status_code == 302


def test_signup_is_off_without_configured_domains(client):
    assert client.get("/signup").status_code == 404


def test_passwords_are_stored_hashed(app):
    from dashboard import database
    from dashboard.users import find_user

    add_user(app, "ada@example.org")
    with app.app_context():
        stored = find_user(database.db(), "ada@example.org").password_hash
    assert PASSWORD not in stored
    assert stored.startswith(("scrypt:", "pbkdf2:"))


def test_create_user_refuses_duplicates_and_bad_email(app):
    from dashboard import database
    from dashboard.users import UserError, create_user

    add_user(app, "ada@example.org")
    with app.app_context():
        with pytest.raises(UserError, match="already exists"):
            create_user(database.db(), "ADA@example.org", PASSWORD)
        with pytest.raises(UserError, match="not an email"):
            create_user(database.db(), "not-an-email", PASSWORD)
