"""Browser-side protections on every response: security headers and the cookie's Secure flag.

The Content-Security-Policy allows scripts and styles only from the dashboard's own files
(`dashboard/static/`): no inline script, no inline style, no framing by any site. Responses
that set their own policy (published files are served with a sandbox policy) keep it.

`SESSION_COOKIE_SECURE` is "auto" by default: the cookie is marked Secure unless the request
is plain http to a loopback host (the embedded default, http://127.0.0.1:5000). Behind a TLS
proxy the public host name is not loopback, so the cookie is Secure. Set
TELEMETRY_DASHBOARD_SESSION_COOKIE_SECURE=true or false to decide it yourself.
"""

from __future__ import annotations

import ipaddress

from flask import Flask, Response, current_app, has_request_context, request
from flask.sessions import SecureCookieSessionInterface

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


def add_security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def is_loopback_host(host: str) -> bool:
    """'localhost', '127.0.0.1:5000', '[::1]:8000' and the like."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def cookie_should_be_secure(setting: object, scheme: str, host: str) -> bool:
    if isinstance(setting, str) and setting.lower() == "auto":
        return scheme == "https" or not is_loopback_host(host)
    if isinstance(setting, str):
        return setting.lower() in ("1", "true", "yes", "on")
    return bool(setting)


def request_cookie_secure() -> bool:
    """Whether this request's session cookie is marked Secure."""
    return current_app.session_interface.get_cookie_secure(current_app)


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions with the Secure flag decided per request ("auto")."""

    def get_cookie_secure(self, app: Flask) -> bool:
        setting = app.config["SESSION_COOKIE_SECURE"]
        if not has_request_context():
            return cookie_should_be_secure(setting, "https", "")
        return cookie_should_be_secure(setting, request.scheme, request.host)


def init_app(app: Flask) -> None:
    app.session_interface = SessionInterface()
    app.after_request(add_security_headers)
