"""The scheduler's decisions, as pure functions: which firings run, which are recorded missed,
which runs are lost. No database, no threads, no clock beyond the arguments.

The same three questions APScheduler's executors answer (`coalesce`, `max_instances`,
`misfire_grace_time`), answered here for jobs stored in our own tables:

- **missed firings** (`catch_up`): firings since a job's last recorded scheduled run (or its
  creation) that no service saw. The most recent runs once if it is younger than the grace
  period; every other one is recorded `missed` (coalescing: never a burst of runs after an
  outage), at most `MAX_MISSED_RECORDS` of them per job.
- **overlapping firings** (`decide_firings`): never two runs of one job at once. A firing
  while the job's previous run is still going is recorded `missed` with an `overlap` reason; a
  firing already recorded (by this or another service) is left alone, the double-firing guard.
- **lost firings** (`lost_run_ids`): runs the table says are `running` but that no live
  process of this service is executing belong to a service that died; they become `lost`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from typing import Protocol

from scheduler.clock import naive_utc
from scheduler.models import RunState
from scheduler.triggers import Schedule, ScheduleKey, firings_between, schedule_key

MAX_MISSED_RECORDS = 100

MISSED_WHILE_DOWN = "missed: the scheduler service was not running"
OVERLAP = "overlap: the previous run of this job was still running"
LOST = "lost: the scheduler service stopped while the run was in progress"


def missed_too_old(grace: dt.timedelta) -> str:
    """The reason of a latest missed firing that is past the grace period."""
    return f"missed: the service was down and the firing is older than the grace period ({grace})"


class ScheduledJob(Schedule, Protocol):
    """The job fields the policy reads (a Job row or any object with them)."""

    id: int
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class MissedFiring:
    scheduled_for: dt.datetime
    reason: str


@dataclasses.dataclass(frozen=True)
class CatchUp:
    """What to do with one job's unseen firings after a restart."""

    missed: tuple[MissedFiring, ...] = ()
    run: dt.datetime | None = None  # the one firing to run now, if any
    dropped: int = 0  # older missed firings beyond MAX_MISSED_RECORDS, not recorded


@dataclasses.dataclass(frozen=True)
class FiringDecision:
    """One job's run for a firing: `running` (start it) or `missed` (record why not)."""

    job_id: int
    state: RunState
    reason: str | None = None


def apscheduler_job_defaults(grace_seconds: float) -> dict:
    """APScheduler's own guards for our alarms: a late alarm fires once (coalesce), never
    twice at once, and still fires within the grace period."""
    return {"coalesce": True, "max_instances": 1, "misfire_grace_time": int(max(grace_seconds, 1))}


def unseen_firings(
    job: ScheduledJob, last_scheduled: dt.datetime | None, now: dt.datetime
) -> list[dt.datetime]:
    """Firings (naive UTC) after the job's last recorded scheduled run, or its creation, up to
    `now`, respecting its end date."""
    since = max(last_scheduled, job.created_at) if last_scheduled else job.created_at
    return [naive_utc(f) for f in firings_between(job, since, now)]


def catch_up(
    firings: Sequence[dt.datetime],
    now: dt.datetime,
    grace: dt.timedelta,
    max_missed: int = MAX_MISSED_RECORDS,
) -> CatchUp:
    """The missed-firing policy for one job's unseen `firings` (in order): coalesce them into
    at most one run, the latest, if it is within `grace` of `now`; record the others missed."""
    if not firings:
        return CatchUp()
    latest, older = firings[-1], list(firings[:-1])
    dropped = max(len(older) - max_missed, 0)
    older = older[dropped:]
    missed = [MissedFiring(instant, MISSED_WHILE_DOWN) for instant in older]
    if now - latest > grace:
        return CatchUp((*missed, MissedFiring(latest, missed_too_old(grace))), None, dropped)
    return CatchUp(tuple(missed), latest, dropped)


def fires_at(
    job: ScheduledJob, scheduled_for: dt.datetime, only_job_ids: Collection[int] | None = None
) -> bool:
    """Whether an (enabled) job takes part in the firing at `scheduled_for`: it existed then
    and had not ended."""
    return (
        (job.end_date is None or job.end_date >= scheduled_for)
        and job.created_at <= scheduled_for
        and (only_job_ids is None or job.id in only_job_ids)
    )


def decide_firings(
    job_ids: Iterable[int], recorded: Collection[int], busy: Collection[int]
) -> list[FiringDecision]:
    """The overlap and double-firing policy for one firing: jobs that already have a run for it
    get nothing; busy jobs get a `missed` run; the others a `running` one."""
    decisions = []
    for job_id in job_ids:
        if job_id in recorded:
            continue
        if job_id in busy:
            decisions.append(FiringDecision(job_id, RunState.missed, OVERLAP))
        else:
            decisions.append(FiringDecision(job_id, RunState.running))
    return decisions


def lost_run_ids(running: Iterable[int], active: Collection[int]) -> list[int]:
    """Runs the table says are running that this service is not executing: their process is
    gone (the service that started them died)."""
    return [run_id for run_id in running if run_id not in active]


def wanted_schedules(jobs: Iterable[Schedule], now: dt.datetime) -> set[ScheduleKey]:
    """The distinct schedules that need an alarm: those of enabled jobs not yet ended."""
    return {schedule_key(job) for job in jobs if job.end_date is None or job.end_date > now}
