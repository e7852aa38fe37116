"""The record of sign-in attempts that admins read on /admin/sign-ins."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.models import SignInEvent
from dashboard.users import normalise_email


def record(
    session: Session,
    email: str,
    client_address: str,
    method: str,
    outcome: str,
    detail: str | None = None,
) -> None:
    """Store one attempt (committed). `outcome` is ok, refused or throttled."""
    session.add(
        SignInEvent(
            email=normalise_email(email)[:320],
            client_address=client_address[:100],
            method=method,
            outcome=outcome,
            detail=detail[:500] if detail else None,
        )
    )
    session.commit()


def recent(session: Session, limit: int = 200) -> list[SignInEvent]:
    return list(session.scalars(select(SignInEvent).order_by(SignInEvent.id.desc()).limit(limit)))
