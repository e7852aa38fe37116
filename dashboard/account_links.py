"""Signed, expiring links mailed to an address: the proof that someone reads that mailbox.

One kind of link serves both sign-up and password reset: following it lets the reader choose
a password for the address. For an address without an account that creates the account (so
nothing usable exists before the owner has proved the address); for an existing account it
replaces the password. The token is signed with the app's secret key (itsdangerous) and names
the address and a fingerprint of the account's current state (password hash and session
generation), so a link works once: setting the password changes the fingerprint and every
earlier link for that address stops working.
"""

from __future__ import annotations

import hashlib

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from dashboard.errors import LinkError
from dashboard.models import User

SALT = "dashboard-account-link"
NO_ACCOUNT = "new"


def account_fingerprint(user: User | None) -> str:
    """What an account looks like now; a link made for another state is refused."""
    if user is None:
        return NO_ACCOUNT
    state = f"{user.id}:{user.password_hash}:{user.session_generation}".encode()
    return hashlib.sha256(state).hexdigest()[:32]


def make_token(secret_key: str, email: str, user: User | None) -> str:
    serializer = URLSafeTimedSerializer(secret_key, salt=SALT)
    return serializer.dumps({"email": email, "state": account_fingerprint(user)})


def read_token(secret_key: str, token: str, max_age_seconds: int) -> tuple[str, str]:
    """(email, fingerprint) from a token; LinkError when it is bad or older than the limit."""
    serializer = URLSafeTimedSerializer(secret_key, salt=SALT)
    try:
        data = serializer.loads(token, max_age=max_age_seconds)
    except SignatureExpired as exc:
        raise LinkError("This link has expired; ask for a new one.") from exc
    except BadSignature as exc:
        raise LinkError("This link is not valid; ask for a new one.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("email"), str):
        raise LinkError("This link is not valid; ask for a new one.")
    return data["email"], str(data.get("state", ""))


def check_still_valid(user: User | None, fingerprint: str) -> None:
    """LinkError when the account changed since the link was made (the link was used)."""
    if account_fingerprint(user) != fingerprint:
        raise LinkError("This link was already used; ask for a new one.")
