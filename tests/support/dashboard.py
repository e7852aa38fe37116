"""Helpers shared by the dashboard tests: users, sign-in with a real CSRF token, job forms."""

from __future__ import annotations

import functools
import io
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy import func, select

from tests.support.tarballs import make_tarball

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


def csrf_token(client, url: str) -> str:
    html = client.get(url).get_data(as_text=True)
    match = CSRF_RE.search(html)
    assert match, f"no csrf_token on {url}"
    return match.group(1) or match.group(2)


@functools.cache
def _password_hash() -> str:
    from werkzeug.security import generate_password_hash

    # A cheap pbkdf2 keeps sign-in fast in tests; create_user's default (scrypt) is tested on its own.
    return generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


def add_user(app, email: str, admin: bool = False) -> int:
    """Insert a user with PASSWORD (users.create_user is tested on its own)."""
    from dashboard import database
    from dashboard.models import User

    with app.app_context():
        user = User(email=email, password_hash=_password_hash(), is_admin=admin)
        database.db().add(user)
        database.db().commit()
        return user.id


def sign_in(client, email: str, password: str = PASSWORD):
    token = csrf_token(client, "/login")
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def job_form(**overrides) -> dict:
    data = {
        "name": "weekly-report",
        "command": "bash run.sh",
        "output_dir": "output",
        "frequency": "daily",
        "day_of_week": "",
        "day_of_month": "",
        "hour": "12",
        "timeout_minutes": "60",
        "end_date": "",
        "enabled": "y",
    }
    data.update(overrides)
    return data


def post_job(
    client,
    url: str = "/jobs/new",
    tarball: bytes | None = None,
    filename: str = "code.tar.gz",
    csrf: bool = True,
    csrf_url: str | None = None,
    **overrides,
):
    data = job_form(**overrides)
    if csrf:
        data["csrf_token"] = csrf_token(client, csrf_url or url)
    if tarball is not False:
        data["tarball"] = (io.BytesIO(make_tarball() if tarball is None else tarball), filename)
    return client.post(url, data=data, content_type="multipart/form-data")


def count(app, model) -> int:
    from dashboard import database

    with app.app_context():
        return database.db().scalar(select(func.count()).select_from(model))


LINK_RE = re.compile(r"https?://[^\s]+/account/link/[A-Za-z0-9_.\-]+")


def mailed_link(message) -> str:
    """The account link in a mail received by the test SMTP server (full URL)."""
    body = message.get_payload(decode=True).decode()
    match = LINK_RE.search(body)
    assert match, f"no account link in the mail:\n{body}"
    return match.group(0)


def link_path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


def choose_password(client, path: str, password: str = PASSWORD):
    token = csrf_token(client, path)
    return client.post(path, data={"password": password, "confirm": password, "csrf_token": token})


def sign_out(client):
    return client.post("/logout", data={"csrf_token": csrf_token(client, "/jobs")})


def public_key(kind: str = "ed25519", comment: str = "ada@laptop") -> str:
    private = {
        "ed25519": lambda: ed25519.Ed25519PrivateKey.generate(),
        "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ecdsa": lambda: ec.generate_private_key(ec.SECP256R1()),
    }[kind]()
    line = (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return f"{line} {comment}".strip()
