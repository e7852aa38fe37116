"""The scheduler's pure policy, table-driven: missed firings after a restart, overlapping
firings, lost runs. No database, no threads, no sleeps; time is a FakeClock's."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from scheduler import policy
from scheduler.clock import FakeClock, naive_utc
from scheduler.models import RunState
from scheduler.triggers import ScheduleKey, schedule_key

T0 = dt.datetime(2024, 5, 1, 12, 0)  # a firing of a daily-at-12 job
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
GRACE = HOUR
MINUTE = dt.timedelta(minutes=1)


@dataclasses.dataclass
class FakeJob:
    id: int = 1
    frequency: str = "daily"
    hour: int = 12
    day_of_week: int | None = None
    day_of_month: int | None = None
    end_date: dt.datetime | None = None
    created_at: dt.datetime = T0 - 10 * DAY


def now_at(instant: dt.datetime) -> dt.datetime:
    """`now` as the service reads it: from its injected clock, naive UTC."""
    return naive_utc(FakeClock(instant).now())


# (case, job created, last recorded scheduled run, now) -> (missed firings, firing to run)
MISSED_CASES = [
    ("nothing missed since the last run", T0 - 10 * DAY, T0, T0 + 30 * MINUTE, [], None),
    ("one missed firing within the grace period runs", T0 - HOUR, None, T0 + 40 * MINUTE, [], T0),
    ("one missed firing past the grace period is missed", T0 - HOUR, None, T0 + 2 * HOUR, [T0], None),
    ("firing exactly at the end of the grace period still runs", T0 - HOUR, None, T0 + GRACE, [], T0),
    ("older firings are missed, the latest runs", T0 - DAY - HOUR, None, T0 + 5 * MINUTE, [T0 - DAY], T0),
    ("all missed when the latest is too old", T0 - 2 * DAY - HOUR, None, T0 + 2 * HOUR, [T0 - 2 * DAY, T0 - DAY, T0], None),
    ("counted from the last recorded run, not creation", T0 - 30 * DAY, T0 - DAY, T0 + 2 * HOUR, [T0], None),
    ("a job created after the firing has nothing to catch up", T0 + HOUR, None, T0 + 2 * HOUR, [], None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("created", "last", "now", "missed", "run"),
    [case[1:] for case in MISSED_CASES],
    ids=[case[0] for case in MISSED_CASES],
)
def test_missed_firings_are_coalesced_into_the_latest_within_grace(created, last, now, missed, run):
    job = FakeJob(created_at=created)
    now = now_at(now)
    decision = policy.catch_up(policy.unseen_firings(job, last, now), now, GRACE)
    assert [m.scheduled_for for m in decision.missed] == missed
    assert decision.run == run
    assert decision.dropped == 0


def test_missed_reasons_say_why():
    firings = [T0 - DAY, T0]
    coalesced = policy.catch_up(firings, T0 + 5 * MINUTE, GRACE)
    assert [m.reason for m in coalesced.missed] == [policy.MISSED_WHILE_DOWN]
    too_old = policy.catch_up(firings, T0 + 2 * HOUR, GRACE)
    assert too_old.missed[-1].reason == policy.missed_too_old(GRACE)
    assert "older than the grace period (1:00:00)" in too_old.missed[-1].reason


def test_missed_firings_beyond_the_cap_are_dropped_oldest_first():
    firings = [T0 - n * DAY for n in range(150, -1, -1)]
    decision = policy.catch_up(firings, T0 + 2 * HOUR, GRACE)
    older = decision.missed[:-1]
    assert len(older) == policy.MAX_MISSED_RECORDS and decision.dropped == 50
    assert older[0].scheduled_for == T0 - 100 * DAY and older[-1].scheduled_for == T0 - DAY
    assert decision.missed[-1].scheduled_for == T0 and decision.run is None


def test_an_ended_job_catches_up_only_to_its_end_date():
    job = FakeJob(created_at=T0 - 3 * DAY - HOUR, end_date=T0 - DAY + HOUR)
    firings = policy.unseen_firings(job, None, T0 + 5 * MINUTE)
    assert firings == [T0 - 3 * DAY, T0 - 2 * DAY, T0 - DAY]


# (case, jobs of the firing, already recorded, busy) -> decisions
FIRING_CASES = [
    ("free jobs run", [1, 2], set(), set(), [(1, RunState.running, None), (2, RunState.running, None)]),
    ("a busy job's firing is an overlap", [1, 2], set(), {2}, [(1, RunState.running, None), (2, RunState.missed, policy.OVERLAP)]),
    ("a recorded firing is not fired twice", [1, 2], {1}, set(), [(2, RunState.running, None)]),
    ("recorded wins over busy", [1], {1}, {1}, []),
    ("busy jobs outside the firing do not matter", [1], set(), {7}, [(1, RunState.running, None)]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("job_ids", "recorded", "busy", "expected"),
    [case[1:] for case in FIRING_CASES],
    ids=[case[0] for case in FIRING_CASES],
)
def test_overlapping_and_double_firings(job_ids, recorded, busy, expected):
    decisions = policy.decide_firings(job_ids, recorded, busy)
    assert [(d.job_id, d.state, d.reason) for d in decisions] == expected


# (case, run ids marked running in the table, run ids this service executes) -> lost
LOST_CASES = [
    ("after a restart every running row is lost", [5, 6], set(), [5, 6]),
    ("runs this service executes are not lost", [5, 6], {6}, [5]),
    ("nothing running, nothing lost", [], {3}, []),
]


@pytest.mark.parametrize(
    ("running", "active", "lost"),
    [case[1:] for case in LOST_CASES],
    ids=[case[0] for case in LOST_CASES],
)
def test_lost_runs_are_running_rows_no_live_process_executes(running, active, lost):
    assert policy.lost_run_ids(running, active) == lost


# (case, job, scheduled_for, only these job ids) -> takes part
FIRES_AT_CASES = [
    ("an ordinary job fires", FakeJob(), T0, None, True),
    ("not before it was created", FakeJob(created_at=T0 + HOUR), T0, None, False),
    ("not after its end date", FakeJob(end_date=T0 - HOUR), T0, None, False),
    ("on its end date exactly", FakeJob(end_date=T0), T0, None, True),
    ("catch-up fires only the jobs it names", FakeJob(id=3), T0, {1, 2}, False),
]


@pytest.mark.parametrize(
    ("job", "scheduled_for", "only", "fires"),
    [case[1:] for case in FIRES_AT_CASES],
    ids=[case[0] for case in FIRES_AT_CASES],
)
def test_which_jobs_take_part_in_a_firing(job, scheduled_for, only, fires):
    assert policy.fires_at(job, scheduled_for, only) is fires


def test_one_alarm_per_distinct_schedule_of_jobs_not_ended():
    jobs = [
        FakeJob(id=1),
        FakeJob(id=2),
        FakeJob(id=3, frequency="weekly", day_of_week=2, hour=6),
        FakeJob(id=4, frequency="monthly", day_of_month=31, hour=0),
        FakeJob(id=5, hour=3, end_date=T0 - HOUR),
    ]
    assert policy.wanted_schedules(jobs, now_at(T0)) == {
        ScheduleKey("daily", None, 12),
        ScheduleKey("weekly", 2, 6),
        ScheduleKey("monthly", 31, 0),
    }


def test_schedule_keys_are_named_and_name_their_alarm():
    key = schedule_key(FakeJob(frequency="weekly", day_of_week=4, hour=9))
    assert (key.frequency, key.day, key.hour) == ("weekly", 4, 9)
    assert key == ("weekly", 4, 9)  # still a tuple: equal to the positional form
    assert key.alarm_id == "fire:weekly:4:9"


def test_apscheduler_guards_follow_the_grace_period():
    assert policy.apscheduler_job_defaults(3600) == {
        "coalesce": True,
        "max_instances": 1,
        "misfire_grace_time": 3600,
    }
    assert policy.apscheduler_job_defaults(0)["misfire_grace_time"] == 1
