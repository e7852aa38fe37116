"""Tables the dashboard owns: users, their API tokens, sign-in records, sign-in rate-limit
counters, and ad-hoc analysis workers.

Jobs and runs belong to the scheduler (`scheduler.models`); the dashboard only reads and
writes them through `scheduler.service`. A job's `owner` is the user's email address.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pipeline.db import Base
from scheduler.models import utcnow


class User(Base):
    __tablename__ = "dashboard_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    # "" for an account without a password (made by single sign-on, or before one is chosen).
    password_hash: Mapped[str] = mapped_column(String(500), nullable=False)
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    # Every session cookie carries the generation it was issued under; raising it (sign-out,
    # password change, "sign out everywhere") makes every earlier cookie of this user invalid.
    session_generation: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )

    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )


class ApiToken(Base):
    """A bearer token for the JSON API; only its SHA-256 is stored, the secret is shown once."""

    __tablename__ = "dashboard_api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("dashboard_users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    label: Mapped[str] = mapped_column(String(100), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship(back_populates="tokens")


class SignInEvent(Base):
    """One sign-in attempt (password or single sign-on), kept for the admins' sign-in page."""

    __tablename__ = "dashboard_sign_in_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow, index=True)
    email: Mapped[str] = mapped_column(String(320), nullable=False, index=True)
    client_address: Mapped[str] = mapped_column(String(100), nullable=False)
    method: Mapped[str] = mapped_column(String(16), nullable=False)  # password | sso
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)  # ok | refused | throttled
    detail: Mapped[str | None] = mapped_column(String(500))


class RateLimitCounter(Base):
    """A fixed-window counter of the sign-in throttle (`dashboard.throttle.AppDatabaseStorage`):
    kept in the app database so every dashboard process counts the same attempts."""

    __tablename__ = "dashboard_rate_limits"

    key: Mapped[str] = mapped_column(String(1000), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False)
    expires_at: Mapped[float] = mapped_column(Float, nullable=False)  # seconds since the epoch


class WorkerState(enum.StrEnum):
    launching = "launching"
    running = "running"
    terminated = "terminated"
    failed = "failed"

    @property
    def active(self) -> bool:
        return self in (WorkerState.launching, WorkerState.running)


class Worker(Base):
    """An ad-hoc analysis machine a user launched, with the time it will be killed."""

    __tablename__ = "dashboard_workers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    owner: Mapped[str] = mapped_column(String(320), nullable=False, index=True)
    provider: Mapped[str] = mapped_column(String(16), nullable=False)
    ssh_public_key: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(
        String(16), nullable=False, default=WorkerState.launching.value, index=True
    )
    instance_id: Mapped[str | None] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(
        String(500)
    )  # host name/IP (ec2) or directory (local)
    connect_command: Mapped[str | None] = mapped_column(Text)
    launched_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    warned_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # expiry email sent
    terminated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    reason: Mapped[str | None] = mapped_column(Text)
