"""scheduler.job_spec, the one set of job rules: text and typed values alike, one message per
problem, keyed by its field."""

from __future__ import annotations

import datetime as dt

import pytest

from scheduler import job_spec
from scheduler.errors import JobValidationError

GOOD = dict(
    name="weekly-report",
    owner="ana@example.com",
    command="python run.py",
    output_dir="output/",
    frequency="weekly",
    day_of_week=0,
    hour=6,
    timeout_minutes=15,
    end_date=dt.date(2030, 1, 1),
)


def test_text_from_a_form_or_the_command_line_means_what_the_typed_values_mean():
    typed = job_spec.validate(GOOD)
    text = job_spec.validate(
        {
            **GOOD,
            "day_of_week": "0",
            "hour": "6",
            "timeout_minutes": " 15 ",
            "end_date": "2030-01-01",
        }
    )
    assert typed == text
    assert typed["output_dir"] == "output"
    assert typed["end_date"] == dt.datetime(2030, 1, 1, 23, 59, 59)


def test_only_the_day_the_frequency_needs_is_read():
    clean = job_spec.validate({**GOOD, "frequency": "daily", "day_of_month": "garbage"})
    assert (clean["day_of_week"], clean["day_of_month"]) == (None, None)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "new"}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"command": "x" * 2001}, "command"),
        ({"output_dir": "~/out"}, "output_dir"),
        ({"hour": True}, "hour"),
        ({"timeout_minutes": 1441}, "timeout_minutes"),
        ({"timeout_minutes": "99999999999999999999"}, "timeout_minutes"),
        ({"enabled": "yes"}, "enabled"),
        ({"end_date": "2030-13-01"}, "end_date"),
        ({"tarball_key": " "}, "tarball_key"),
    ],
)
def test_each_problem_is_one_message_on_its_own_field(changes, field):
    clean, errors = job_spec.check({**GOOD, **changes})
    assert list(errors) == [field]
    with pytest.raises(JobValidationError) as caught:
        job_spec.validate({**GOOD, **changes})
    assert caught.value.errors == errors


def test_the_code_is_checked_only_once_stored():
    """A submission is checked before its tarball is stored, so no key is needed yet."""
    assert "tarball_key" not in job_spec.validate(GOOD)
    assert job_spec.validate({**GOOD, "tarball_key": "k.tar.gz"})["tarball_key"] == "k.tar.gz"
