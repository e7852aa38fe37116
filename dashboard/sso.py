"""Single sign-on with OpenID Connect (Authlib), for operators who have an identity provider.

Configured by the dashboard section (dashboard.config, TELEMETRY_DASHBOARD_OIDC_*); off unless
OIDC_CLIENT_ID and a discovery URL or issuer are set. "Sign in with single sign-on" sends the browser to the
provider (authorization code flow, state and nonce checked by Authlib); on return the
provider's email must be verified and must be at an allowed domain, or the account must be in
an allowed group (`sso_refusal`). An account is made on first sign-in; an account the operator
made beforehand with the same address simply signs in. PASSWORD_SIGNIN=false switches
passwords off (sign-in, sign-up and reset by mail), leaving single sign-on only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, Flask, current_app, flash, redirect, render_template, url_for

from dashboard import database, signin_log, throttle
from dashboard.auth import start_session
from dashboard.config import DashboardConfig, setting_name
from dashboard.users import create_user, find_user, normalise_email
from pipeline.config import Settings
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)
bp = Blueprint("sso", __name__)


def split_list(value: str | Iterable[str] | None) -> list[str]:
    """'a, b' or ['a', 'b'] (a setting or a test's config dict) as a clean list."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


def sso_refusal(
    claims: Mapping[str, Any],
    *,
    allowed_domains: list[str],
    allowed_groups: list[str],
    groups_claim: str,
    require_verified_email: bool,
    existing_account: bool,
) -> str | None:
    """Why the provider's answer does not admit this person, or None when it does.

    An operator-made account with the same verified address is admitted; a new account needs
    an allowed email domain (case-insensitive) or membership of an allowed group.
    """
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        return "the identity provider sent no email address"
    verified = claims.get("email_verified")
    if require_verified_email and verified not in (True, "true", "True"):
        return f"the identity provider has not verified {email}"
    if existing_account:
        return None
    domain = normalise_email(email).rpartition("@")[2]
    if domain in {d.lower().lstrip("@") for d in allowed_domains}:
        return None
    groups = claims.get(groups_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    if set(map(str, groups)) & set(allowed_groups):
        return None
    return f"{email} is not at an allowed domain or in an allowed group"


def discovery_url(config: Mapping[str, Any]) -> str:
    if config.get("OIDC_DISCOVERY_URL"):
        return config["OIDC_DISCOVERY_URL"]
    issuer = config.get("OIDC_ISSUER") or ""
    return issuer.rstrip("/") + "/.well-known/openid-configuration" if issuer else ""


def init_app(app: Flask) -> None:
    """Register the OIDC client when configured; refuse passwords-off without it."""
    for key, value in DashboardConfig().flask_config().items():  # an app made elsewhere
        app.config.setdefault(key, value)
    url = discovery_url(app.config)
    if not (url and app.config["OIDC_CLIENT_ID"]):
        if not app.config["PASSWORD_SIGNIN"]:
            raise ConfigError(
                setting_name("PASSWORD_SIGNIN"),
                "is false but single sign-on is not configured (set TELEMETRY_DASHBOARD_OIDC_ISSUER"
                " or TELEMETRY_DASHBOARD_OIDC_DISCOVERY_URL and TELEMETRY_DASHBOARD_OIDC_CLIENT_ID):"
                " nobody could sign in",
            )
        return
    oauth = OAuth(app)
    secret = app.config["OIDC_CLIENT_SECRET"]
    oauth.register(
        "oidc",
        # a test's config dict may hold a number
        client_id=str(app.config["OIDC_CLIENT_ID"]),
        client_secret=str(secret) if secret not in (None, "") else None,
        server_metadata_url=url,
        client_kwargs={"scope": app.config["OIDC_SCOPE"]},
    )
    app.extensions["telemetry_oidc"] = oauth


def _client():
    oauth = current_app.extensions.get("telemetry_oidc")
    if oauth is None:
        return None
    return oauth.create_client("oidc")


def callback_url(settings: Settings) -> str:
    """The redirect URI to register at the provider (on TELEMETRY_PUBLIC_BASE_URL)."""
    return settings.public_base_url.rstrip("/") + url_for("sso.callback")


@bp.route("/login/sso")
def start():
    client = _client()
    if client is None:
        return redirect(url_for("auth.login"))
    try:
        return client.authorize_redirect(callback_url(database.settings()))
    except (requests.RequestException, ValueError) as exc:
        log.error(
            "cannot reach the identity provider at %s: %s", discovery_url(current_app.config), exc
        )
        return _unreachable()


@bp.route("/login/sso/callback")
def callback():
    client = _client()
    if client is None:
        return redirect(url_for("auth.login"))
    address = throttle.client_address()
    groups_claim = current_app.config["OIDC_GROUPS_CLAIM"]
    try:
        token = client.authorize_access_token()
        claims = dict(token.get("userinfo") or {})
        if groups_claim not in claims and current_app.config["OIDC_ALLOWED_GROUPS"]:
            extra = client.userinfo(token=token)
            claims.update({k: v for k, v in extra.items() if k not in claims})
    except (OAuthError, ValueError) as exc:
        log.warning("single sign-on failed from %s: %s", address, exc)
        return _refused("The identity provider's answer was not accepted; please try again.")
    except requests.RequestException as exc:
        log.error("cannot reach the identity provider: %s", exc)
        return _unreachable()
    email = normalise_email(str(claims.get("email") or ""))
    session = database.db()
    user = find_user(session, email) if email else None
    allowed_domains = current_app.config["OIDC_ALLOWED_DOMAINS"]
    if allowed_domains is None:
        allowed_domains = current_app.config["SIGNUP_DOMAINS"]
    reason = sso_refusal(
        claims,
        allowed_domains=split_list(allowed_domains),
        allowed_groups=split_list(current_app.config["OIDC_ALLOWED_GROUPS"]),
        groups_claim=groups_claim,
        require_verified_email=bool(current_app.config["OIDC_REQUIRE_VERIFIED_EMAIL"]),
        existing_account=user is not None,
    )
    if reason:
        signin_log.record(session, email or "(none)", address, "sso", "refused", reason)
        log.warning("single sign-on refused from %s: %s", address, reason)
        return _refused(f"Sign-in refused: {reason}.")
    if user is None:
        user = create_user(session, email, None)
        log.info("user %s created by single sign-on", email)
    start_session(user)
    signin_log.record(session, email, address, "sso", "ok")
    log.info("user %s signed in by single sign-on from %s", email, address)
    flash(f"Signed in as {email}.")
    return redirect(url_for("jobs.list_jobs"))


def _refused(message: str):
    return render_template("auth/sso_refused.html", message=message), 403


def _unreachable():
    message = "The identity provider cannot be reached just now; please try again later."
    return render_template("auth/sso_refused.html", message=message), 502
