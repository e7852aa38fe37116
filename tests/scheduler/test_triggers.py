"""When jobs fire: daily/weekly/monthly at an hour, month ends, 29th-31st, leap years."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from scheduler.triggers import firings_between, latest_firing, next_run_time

UTC = dt.UTC


def job(frequency="daily", day_of_week=None, day_of_month=None, hour=12, end_date=None):
    return SimpleNamespace(
        frequency=frequency,
        day_of_week=day_of_week,
        day_of_month=day_of_month,
        hour=hour,
        end_date=end_date,
    )


def at(*args):
    return dt.datetime(*args, tzinfo=UTC)


def test_daily_fires_at_the_hour_utc():
    assert next_run_time(job(hour=12), at(2024, 5, 1, 11, 59)) == at(2024, 5, 1, 12)
    assert next_run_time(job(hour=12), at(2024, 5, 1, 12, 0)) == at(2024, 5, 2, 12)
    assert next_run_time(job(hour=0), at(2024, 12, 31, 23)) == at(2025, 1, 1, 0)


def test_daily_never_drifts_over_many_firings():
    fires = list(firings_between(job(hour=7), at(2024, 1, 1), at(2024, 12, 31, 23)))
    assert len(fires) == 366
    assert all(f.hour == 7 and f.minute == 0 and f.second == 0 for f in fires)


def test_weekly_fires_on_the_day_of_week():
    # 2024-05-01 is a Wednesday (2); Monday is 0.
    assert next_run_time(job("weekly", day_of_week=0, hour=3), at(2024, 5, 1)) == at(2024, 5, 6, 3)
    assert next_run_time(job("weekly", day_of_week=2, hour=3), at(2024, 5, 1, 3)) == at(
        2024, 5, 8, 3
    )
    assert next_run_time(job("weekly", day_of_week=6, hour=23), at(2024, 5, 1)) == at(
        2024, 5, 5, 23
    )


@pytest.mark.parametrize(
    ("day", "year", "expected_days"),
    [
        (15, 2023, [15] * 12),
        (28, 2023, [28] * 12),
        (29, 2023, [29, 28, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29]),
        (29, 2024, [29] * 12),
        (30, 2024, [30, 29, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30]),
        (30, 2023, [30, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30]),
        (31, 2023, [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]),
        (31, 2024, [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]),
        (31, 2100, [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]),  # 2100 is not a leap year
    ],
)
def test_monthly_fires_once_a_month_clamped_to_the_month_end(day, year, expected_days):
    fires = list(
        firings_between(
            job("monthly", day_of_month=day, hour=6), at(year, 1, 1), at(year, 12, 31, 23)
        )
    )
    assert [f.month for f in fires] == list(range(1, 13))
    assert [f.day for f in fires] == expected_days
    assert all(f.hour == 6 for f in fires)


def test_monthly_31st_from_april_goes_to_april_30():
    assert next_run_time(job("monthly", day_of_month=31, hour=0), at(2024, 4, 1)) == at(2024, 4, 30)
    assert next_run_time(job("monthly", day_of_month=31, hour=0), at(2024, 4, 30)) == at(
        2024, 5, 31
    )


def test_end_date_stops_the_schedule():
    j = job(hour=12, end_date=dt.datetime(2024, 5, 3, 23, 59))
    assert next_run_time(j, at(2024, 5, 3)) == at(2024, 5, 3, 12)
    assert next_run_time(j, at(2024, 5, 3, 12)) is None
    assert len(list(firings_between(j, at(2024, 5, 1), at(2024, 6, 1)))) == 3


def test_naive_datetimes_are_taken_as_utc():
    assert next_run_time(job(hour=12), dt.datetime(2024, 5, 1, 11)) == at(2024, 5, 1, 12)


def test_latest_firing_is_the_alarm_that_just_went_off():
    assert latest_firing(job(hour=12), at(2024, 5, 1, 12, 0, 0)) == at(2024, 5, 1, 12)
    assert latest_firing(job(hour=12), at(2024, 5, 1, 11, 59)) == at(2024, 4, 30, 12)
    assert latest_firing(job("monthly", day_of_month=31, hour=1), at(2023, 3, 5)) == at(
        2023, 2, 28, 1
    )
