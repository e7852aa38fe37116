"""Accounts: creation with werkzeug password hashes, sign-in checks, sign-up domain rules."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from dashboard.models import User
from pipeline.errors import PipelineError

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 8


class UserError(PipelineError):
    """A user could not be created; the message says why."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == normalise_email(email)))


def count_users(session: Session) -> int:
    return session.scalar(select(func.count(User.id))) or 0


def create_user(session: Session, email: str, password: str, *, admin: bool = False) -> User:
    """Add a user (committed); raises UserError for a bad email, short password or duplicate."""
    email = normalise_email(email)
    if not EMAIL_PATTERN.match(email) or len(email) > 320:
        raise UserError(f"{email!r} is not an email address")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if find_user(session, email) is not None:
        raise UserError(f"a user {email} already exists")
    user = User(email=email, password_hash=generate_password_hash(password), is_admin=admin)
    session.add(user)
    session.commit()
    return user


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user when email and password match, else None (same answer for both failures)."""
    user = find_user(session, email)
    if user is None or not check_password_hash(user.password_hash, password):
        return None
    return user


def allowed_signup_domains(setting: str) -> list[str]:
    """`signup_domains` is comma separated ("example.org, example.com"); empty means no sign-up."""
    return [d.strip().lower().lstrip("@") for d in setting.split(",") if d.strip()]


def signup_allowed(email: str, setting: str) -> bool:
    domains = allowed_signup_domains(setting)
    domain = normalise_email(email).rpartition("@")[2]
    return bool(domains) and domain in domains
