"""Accounts: creation with werkzeug password hashes, sign-in checks, sign-up domain rules."""

from __future__ import annotations

import functools
import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from dashboard.errors import UserError
from dashboard.models import User

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 8


def normalise_email(email: str) -> str:
    return email.strip().lower()


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == normalise_email(email)))


def count_users(session: Session) -> int:
    return session.scalar(select(func.count(User.id))) or 0


def create_user(session: Session, email: str, password: str | None, *, admin: bool = False) -> User:
    """Add a user (committed); raises UserError for a bad email, short password or duplicate.

    `password=None` makes an account without a password (single sign-on); it cannot sign in
    with a password until one is set through a mailed link.
    """
    email = normalise_email(email)
    if not EMAIL_PATTERN.match(email) or len(email) > 320:
        raise UserError(f"{email!r} is not an email address")
    if password is not None:
        check_password_rules(password)
    if find_user(session, email) is not None:
        raise UserError(f"a user {email} already exists")
    password_hash = generate_password_hash(password) if password is not None else ""
    user = User(email=email, password_hash=password_hash, is_admin=admin)
    session.add(user)
    session.commit()
    return user


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")


@functools.cache
def dummy_password_hash() -> str:
    """A hash of nothing anybody knows, made with the default method (scrypt): checking a
    password against it costs what checking a real account's password costs."""
    return generate_password_hash("not a password: no account has it")


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user when email and password match, else None (same answer for both failures).

    An unknown address, or an account without a password, is checked against the dummy hash:
    the same work, so neither the answer nor its time tells which accounts exist.
    """
    user = find_user(session, email)
    stored = user.password_hash if user is not None and user.password_hash else None
    matches = check_password_hash(stored or dummy_password_hash(), password)
    if stored is None or not matches:
        return None
    return user


def set_password(session: Session, user: User, password: str) -> None:
    """Give `user` a new password (committed) and end every session the old one opened."""
    check_password_rules(password)
    user.password_hash = generate_password_hash(password)
    end_sessions(session, user)


def end_sessions(session: Session, user: User) -> None:
    """Invalidate every session cookie issued to `user` so far (committed)."""
    user.session_generation = (user.session_generation or 0) + 1
    session.commit()


def allowed_signup_domains(setting: str) -> list[str]:
    """`signup_domains` is comma separated ("example.org, example.com"); empty means no sign-up."""
    return [d.strip().lower().lstrip("@") for d in setting.split(",") if d.strip()]


def signup_allowed(email: str, setting: str) -> bool:
    domains = allowed_signup_domains(setting)
    domain = normalise_email(email).rpartition("@")[2]
    return bool(domains) and domain in domains
