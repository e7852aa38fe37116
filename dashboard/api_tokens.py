"""API tokens: random secrets shown once, stored as SHA-256, looked up by hash."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.models import ApiToken, User
from scheduler.models import utcnow

TOKEN_PREFIX = "tpd_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(session: Session, user: User, label: str) -> tuple[ApiToken, str]:
    """Make a token for `user`; returns the record and the secret (not retrievable later)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, label=label, token_hash=_digest(secret))
    session.add(token)
    session.commit()
    return token, secret


def user_for_token(session: Session, secret: str) -> User | None:
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(secret)))
    if token is None:
        return None
    token.last_used_at = utcnow()
    session.commit()
    return token.user
