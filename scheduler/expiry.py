"""Jobs past their end date: the owner gets one mail saying so."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from pipeline.config import Settings
from scheduler.models import Job
from scheduler.notify import notify_expired

log = logging.getLogger(__name__)


def announce_expired(Session: sessionmaker, settings: Settings, now: dt.datetime) -> None:
    """Mail the owner of every enabled job that ended before `now` and was not announced yet."""
    with Session() as session:
        expired = session.scalars(
            select(Job).where(
                Job.end_date.is_not(None),
                Job.end_date < now,
                Job.expiry_notified_at.is_(None),
                Job.enabled.is_(True),
            )
        ).all()
        for job in expired:
            log.info("job %s expired (end date %s)", job.name, job.end_date)
            notify_expired(settings, owner=job.owner, job_name=job.name, end_date=job.end_date)
            job.expiry_notified_at = now
        session.commit()
