"""The record of sign-in attempts that admins read on /admin/sign-ins."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dashboard.models import SignInEvent
from dashboard.users import normalise_email
from scheduler.models import utcnow

RETENTION = dt.timedelta(days=90)
THROTTLED_QUIET = dt.timedelta(minutes=1)


def record(
    session: Session,
    email: str,
    client_address: str,
    method: str,
    outcome: str,
    detail: str | None = None,
) -> None:
    """Store one attempt (committed) and drop those older than RETENTION.

    `outcome` is ok, refused or throttled. A flood of throttled attempts for one account from
    one address is written once a minute, not once per request.
    """
    email = normalise_email(email)[:320]
    now = utcnow()
    if outcome == "throttled" and session.scalar(
        select(SignInEvent.id).where(
            SignInEvent.email == email,
            SignInEvent.client_address == client_address[:100],
            SignInEvent.outcome == "throttled",
            SignInEvent.at > now - THROTTLED_QUIET,
        )
    ):
        return
    session.execute(delete(SignInEvent).where(SignInEvent.at < now - RETENTION))
    session.add(
        SignInEvent(
            email=email,
            at=now,
            client_address=client_address[:100],
            method=method,
            outcome=outcome,
            detail=detail[:500] if detail else None,
        )
    )
    session.commit()


def recent(session: Session, limit: int = 200) -> list[SignInEvent]:
    return list(session.scalars(select(SignInEvent).order_by(SignInEvent.id.desc()).limit(limit)))
