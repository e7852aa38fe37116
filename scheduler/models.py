"""Job and run records: the contract between the scheduler service and the dashboard.

The dashboard writes jobs and asks for runs by inserting rows; the scheduler service is the
only process that executes runs. A "run now" is a Run row in state `scheduled` with
`trigger="manual"` that the service picks up; (job_id, scheduled_for) is unique, so one
firing can never produce two runs, even with two service processes.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pipeline.db import Base


def utcnow() -> dt.datetime:
    """Naive UTC, as stored in every DateTime column."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Frequency(enum.StrEnum):
    daily = "daily"
    weekly = "weekly"
    monthly = "monthly"


class RunState(enum.StrEnum):
    scheduled = "scheduled"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed_out"
    cancelled = "cancelled"
    lost = "lost"
    missed = "missed"

    @property
    def finished(self) -> bool:
        return self not in (RunState.scheduled, RunState.running)


JOB_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,100}\Z"  # \Z: "$" would also accept a final newline


class ReservedName(Base):
    """The name of a deleted (or renamed) job, reserved to its owner: its published output is
    still served at `/public/<name>/`, so nobody else may take the name and publish there.
    The owner gets it back by creating a job with it; an admin can release it
    (`python -m scheduler release-name NAME`)."""

    __tablename__ = "scheduler_reserved_names"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner: Mapped[str] = mapped_column(String(320), nullable=False)
    reserved_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    owner: Mapped[str] = mapped_column(String(320), nullable=False, index=True)
    # key in TELEMETRY_CODE_URL
    tarball_key: Mapped[str] = mapped_column(String(500), nullable=False)
    command: Mapped[str] = mapped_column(Text, nullable=False)
    output_dir: Mapped[str] = mapped_column(String(500), nullable=False, default="output")
    frequency: Mapped[str] = mapped_column(
        String(16), nullable=False, default=Frequency.daily.value
    )
    day_of_week: Mapped[int | None] = mapped_column(Integer)  # 0 = Monday .. 6 = Sunday (weekly)
    # 1..31 (monthly; clamped to month end)
    day_of_month: Mapped[int | None] = mapped_column(Integer)
    hour: Mapped[int] = mapped_column(Integer, nullable=False, default=12)  # UTC
    timeout_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=60)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    end_date: Mapped[dt.datetime | None] = mapped_column(DateTime)
    runner: Mapped[str] = mapped_column(String(16), nullable=False, default="local")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime, nullable=False, default=utcnow, onupdate=utcnow
    )
    # Set by the service when it has emailed the owner that end_date passed (sent once).
    expiry_notified_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    runs: Mapped[list[Run]] = relationship(back_populates="job", cascade="all, delete-orphan")


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("job_id", "scheduled_for", name="one_run_per_firing"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True
    )
    scheduled_for: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    # "schedule", or "manual" for a run-now
    trigger: Mapped[str] = mapped_column(String(16), nullable=False, default="schedule")
    state: Mapped[str] = mapped_column(
        String(16), nullable=False, default=RunState.scheduled.value, index=True
    )
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    log_key: Mapped[str | None] = mapped_column(String(500))  # key in TELEMETRY_PUBLIC_URL
    published_files: Mapped[list | None] = mapped_column(JSON)
    instance_id: Mapped[str | None] = mapped_column(String(64))  # ec2 runner
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    job: Mapped[Job] = relationship(back_populates="runs")


class SchedulerHeartbeat(Base):
    """One row per running scheduler service, refreshed every few seconds.

    Lets `run-now --wait` and the health page tell whether a service will pick up a run.
    """

    __tablename__ = "scheduler_heartbeats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    beat_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
