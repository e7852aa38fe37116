"""Revocable sessions, the cookie's Secure flag, security headers on every response, and bad
input that used to give 500s."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dashboard import create_app
from tests.support.dashboard import PASSWORD, add_user, csrf_token, sign_in, sign_out

TEMPLATES = Path(__file__).resolve().parents[2] / "dashboard" / "templates"


def session_cookie(client) -> str:
    return client.get_cookie("telemetry_session").value


def client_with_cookie(app, value: str):
    thief = app.test_client()
    thief.set_cookie("telemetry_session", value)
    return thief


def test_a_cookie_copied_before_logout_is_refused_after_it(app, client):
    add_user(app, "ada@example.org")
    sign_in(client, "ada@example.org")
    copied = session_cookie(client)
    assert client_with_cookie(app, copied).get("/jobs").status_code == 200
    sign_out(client)
    response = client_with_cookie(app, copied).get("/jobs")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_admin_signs_a_user_out_everywhere(app, client):
    add_user(app, "root@example.org", admin=True)
    ada_id = add_user(app, "ada@example.org")
    ada = app.test_client()
    sign_in(ada, "ada@example.org")
    copied = session_cookie(ada)
    token = csrf_token(ada, "/jobs")
    url = f"/admin/users/{ada_id}/sign-out-everywhere"
    assert ada.post(url, data={"csrf_token": token}).status_code == 404  # admins only
    assert ada.get("/jobs").status_code == 200
    sign_in(client, "root@example.org")
    token = csrf_token(client, "/admin/sign-ins")
    response = client.post(url, data={"csrf_token": token})
    assert response.status_code == 302
    assert ada.get("/jobs").status_code == 302
    assert client_with_cookie(app, copied).get("/jobs").status_code == 302
    assert client.get("/jobs").status_code == 200  # the admin's own session is untouched


@pytest.mark.parametrize(
    ("base_url", "setting", "secure"),
    [
        ("http://localhost/", "auto", False),
        ("http://127.0.0.1:5000/", "auto", False),
        ("http://dashboard.example.org/", "auto", True),
        ("https://dashboard.example.org/", "auto", True),
        ("http://dashboard.example.org/", False, False),
        ("http://localhost/", True, True),
    ],
)
def test_cookies_are_secure_unless_plain_http_on_localhost(settings, base_url, setting, secure):
    app = create_app(settings, {"SESSION_COOKIE_SECURE": setting})
    response = app.test_client().get("/login", base_url=base_url)
    cookie = response.headers["Set-Cookie"]
    assert ("; Secure" in cookie) is secure


def test_secure_is_the_default(app):
    assert app.config["SESSION_COOKIE_SECURE"] == "auto"
    response = app.test_client().get("/login", base_url="http://telemetry.example.org/")
    assert "; Secure" in response.headers["Set-Cookie"]


def assert_security_headers(response, path: str) -> None:
    headers = response.headers
    csp = headers.get("Content-Security-Policy", "")
    assert csp, f"{path}: no Content-Security-Policy"
    if "sandbox" not in csp:  # published files keep their own stricter sandbox policy
        assert "frame-ancestors 'none'" in csp, path
        assert "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp, path
    assert headers.get("X-Content-Type-Options") == "nosniff", path
    assert headers.get("Referrer-Policy") == "same-origin", path
    assert headers.get("X-Frame-Options") == "DENY", path


SIGNED_OUT = ["/login", "/reset", "/public/", "/static/style.css", "/no-such-page", "/jobs"]
SIGNED_IN = [
    "/jobs",
    "/jobs/new",
    "/workers",
    "/health",
    "/account/tokens",
    "/account/password",
    "/admin/sign-ins",
    "/runs/999",
]


def test_security_headers_on_every_page(app, client):
    add_user(app, "root@example.org", admin=True)
    for path in SIGNED_OUT:
        assert_security_headers(client.get(path), path)
    sign_in(client, "root@example.org")
    for path in SIGNED_IN:
        response = client.get(path)
        assert_security_headers(response, path)
    response = client.post("/logout", data={"csrf_token": "wrong"})  # a 400
    assert_security_headers(response, "POST /logout")


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
EVENT_ATTRIBUTE = re.compile(r"\son[a-z]+\s*=", re.I)
INLINE_STYLE = re.compile(r"<style\b|\sstyle\s*=", re.I)


def test_no_template_has_inline_script_or_style():
    """The CSP forbids them: inline code would silently stop working in the browser."""
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        assert not INLINE_SCRIPT.search(text), template
        assert not EVENT_ATTRIBUTE.search(text), template
        assert not INLINE_STYLE.search(text), template


def test_a_nul_in_a_published_path_is_404(client):
    for path in ("/public/job/data/a%00b", "/public/job/data/%00/", "/public/job%00/data/x"):
        assert client.get(path).status_code == 404, path


def test_cr_lf_in_next_is_ignored(app, client):
    add_user(app, "ada@example.org")
    token = csrf_token(client, "/login")
    response = client.post(
        "/login?next=/jobs%0d%0aSet-Cookie:%20evil=1",
        data={"email": "ada@example.org", "password": PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/jobs"
    assert "evil" not in response.headers.get("Set-Cookie", "")


def test_an_app_database_from_before_session_generations_keeps_working(settings):
    """An existing app.db has dashboard_users without session_generation; start-up adds it."""
    from sqlalchemy import text

    from pipeline.db import make_engine

    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE dashboard_users (id INTEGER PRIMARY KEY, email VARCHAR(320) NOT NULL"
                " UNIQUE, password_hash VARCHAR(500) NOT NULL, is_admin BOOLEAN NOT NULL,"
                " created_at DATETIME NOT NULL)"
            )
        )
    engine.dispose()
    app = create_app(settings)
    add_user(app, "ada@example.org")
    client = app.test_client()
    assert sign_in(client, "ada@example.org").status_code == 302
    assert client.get("/jobs").status_code == 200


def test_the_login_page_explains_a_secure_cookie_over_plain_http(app):
    html = app.test_client().get("/login", base_url="http://10.1.2.3:5000/").get_data(as_text=True)
    assert "will not keep the sign-in cookie" in html
    html = app.test_client().get("/login").get_data(as_text=True)
    assert "will not keep the sign-in cookie" not in html
