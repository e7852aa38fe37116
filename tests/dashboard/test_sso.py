"""Single sign-on against a real OpenID Connect provider on loopback (oidc-provider-mock).

The dashboard talks to the provider over HTTP for discovery, keys and the code exchange; the
test plays the browser: it follows the redirect to the provider, picks a user there (the
provider's own form), and brings the redirect back to the dashboard.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests

from dashboard import create_app
from pipeline.errors import ConfigError
from tests.support.dashboard import PASSWORD, add_user, sign_in


def sso_config(issuer: str, **extra) -> dict:
    return {
        "OIDC_ISSUER": issuer,
        "OIDC_CLIENT_ID": "telemetry-dashboard",
        "OIDC_CLIENT_SECRET": "client secret",
        "OIDC_ALLOWED_DOMAINS": "example.org",
        "OIDC_ALLOWED_GROUPS": "analysts",
        **extra,
    }


@pytest.fixture
def app_config(oidc_provider) -> dict:
    return sso_config(oidc_provider)


def sso_sign_in(client, sub: str):
    """The whole round trip; returns the dashboard's answer to the provider's redirect."""
    to_provider = client.get("/login/sso")
    assert to_provider.status_code == 302
    answer = requests.post(
        to_provider.headers["Location"], data={"sub": sub}, timeout=30, allow_redirects=False
    )
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert back.path == "/login/sso/callback"
    return client.get(f"{back.path}?{back.query}")


def user(app, email: str):
    from dashboard import database
    from dashboard.users import find_user

    with app.app_context():
        return find_user(database.db(), email)


def test_first_sign_in_creates_the_account(app):
    client = app.test_client()
    assert "Sign in with single sign-on" in client.get("/login").get_data(as_text=True)
    response = sso_sign_in(client, "ada")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/jobs")
    assert client.get("/jobs").status_code == 200
    account = user(app, "ada@example.org")
    assert account is not None and account.password_hash == ""  # no password to guess
    assert sign_in(app.test_client(), "ada@example.org", "").status_code == 200
    # A second sign-in uses the same account.
    assert sso_sign_in(app.test_client(), "ada").status_code == 302


def test_a_refused_domain_gets_no_account(app):
    client = app.test_client()
    response = sso_sign_in(client, "eve")
    assert response.status_code == 403
    assert "not at an allowed domain" in response.get_data(as_text=True)
    assert user(app, "eve@elsewhere.com") is None
    assert client.get("/jobs").status_code == 302


def test_an_allowed_group_admits_another_domain(app):
    client = app.test_client()
    assert sso_sign_in(client, "grace").status_code == 302
    assert user(app, "grace@partner.test") is not None


def test_an_unverified_email_is_refused(app):
    response = sso_sign_in(app.test_client(), "mallory")
    assert response.status_code == 403
    assert "not verified" in response.get_data(as_text=True)
    assert user(app, "mallory@example.org") is None


def test_an_operator_made_account_signs_in_by_sso(settings, oidc_provider):
    app = create_app(
        settings, sso_config(oidc_provider, OIDC_ALLOWED_DOMAINS="", OIDC_ALLOWED_GROUPS="")
    )
    add_user(app, "eve@elsewhere.com")
    client = app.test_client()
    assert sso_sign_in(client, "eve").status_code == 302
    assert client.get("/jobs").status_code == 200


def test_a_forged_callback_is_refused(app):
    client = app.test_client()
    client.get("/login/sso")
    response = client.get("/login/sso/callback?code=made-up&state=made-up")
    assert response.status_code == 403
    assert client.get("/jobs").status_code == 302


def test_passwords_can_be_switched_off(settings, oidc_provider):
    app = create_app(
        settings, sso_config(oidc_provider, PASSWORD_SIGNIN=False, SIGNUP_DOMAINS="example.org")
    )
    add_user(app, "ada@example.org")
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    assert 'name="password"' not in html
    assert "Sign in with single sign-on" in html
    app.config["WTF_CSRF_ENABLED"] = False  # the page has no form to take a token from
    response = client.post("/login", data={"email": "ada@example.org", "password": PASSWORD})
    assert response.status_code == 404
    app.config["WTF_CSRF_ENABLED"] = True
    assert client.get("/signup").status_code == 404
    assert client.get("/reset").status_code == 404
    assert sso_sign_in(client, "ada").status_code == 302


def test_passwords_off_without_sso_is_refused_at_start(settings):
    with pytest.raises(ConfigError, match="^TELEMETRY_DASHBOARD_PASSWORD_SIGNIN"):
        create_app(settings, {"PASSWORD_SIGNIN": False})


def test_an_unreachable_provider_gets_a_clear_page(settings):
    from tests.support.servers import free_port

    app = create_app(settings, sso_config(f"http://127.0.0.1:{free_port()}"))
    response = app.test_client().get("/login/sso")
    assert response.status_code == 502
    assert "cannot be reached" in response.get_data(as_text=True)
