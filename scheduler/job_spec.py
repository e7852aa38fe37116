"""What a job may be: the one set of rules, and the one wording of each problem, for every way
a job is submitted.

The dashboard's form, its JSON API and `python -m scheduler add` all hand what the user sent
to `check`, so a bad schedule, name or timeout is refused for the same reason in the same words
wherever it was typed. Values arrive as text (form posts, command-line arguments) or as JSON
and Python values (the API, the job records being edited); parsing both here is what keeps
the rules in one place. Each problem is reported once, keyed by the field it belongs to.

Pure: no database. Whether a name is still free is `scheduler.jobs.name_problem`'s question.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from scheduler.clock import naive_utc
from scheduler.errors import JobValidationError
from scheduler.models import JOB_NAME_PATTERN, Frequency

# What a job's owner sets (the form's fields in its order, the API's updatable fields).
OWNER_FIELDS = (
    "command",
    "output_dir",
    "frequency",
    "day_of_week",
    "day_of_month",
    "hour",
    "timeout_minutes",
    "end_date",
    "enabled",
)
# Every field of a job record: the owner's, and those the service or the operator sets.
JOB_FIELDS = ("name", "owner", "tarball_key", *OWNER_FIELDS, "runner")

RUNNERS = ("local", "ec2")
FREQUENCIES = tuple(f.value for f in Frequency)
RESERVED_NAMES = frozenset({"new"})  # the dashboard's /jobs/new is the form
MAX_NAME_CHARS = 100  # also bounded by JOB_NAME_PATTERN
MAX_COMMAND_CHARS = 2000
MAX_OUTPUT_DIR_CHARS = 500
MAX_TIMEOUT_MINUTES = 24 * 60
DAYS_OF_MONTH = (1, 31)

NAME_RULE = f"letters, digits, '-' and '_' only, at most {MAX_NAME_CHARS} characters"
NAME_RULE_MESSAGE = f"Use {NAME_RULE}."
NAME_REQUIRED = "Enter a job name."
TARBALL_REQUIRED = "Upload the code tarball (.tar.gz or .tgz)."
NOT_EDITABLE = "This field cannot be changed."
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def name_taken(name: str) -> str:
    return f"A job named {name!r} already exists; choose another name."


def name_reserved_to_another(name: str) -> str:
    return (
        f"{name!r} belonged to another user's deleted job, whose published output is still "
        "served under it; choose another name (an admin can release it)."
    )


def name_problem(name: Any) -> str | None:
    """Why `name` is not a usable job name by itself (free or not is the database's question)."""
    if not isinstance(name, str) or not name:
        return NAME_REQUIRED
    if not re.match(JOB_NAME_PATTERN, name):
        return NAME_RULE_MESSAGE
    if name in RESERVED_NAMES:
        return f"{name!r} is reserved; choose another name."
    return None


def _int(value: Any) -> int | None:
    """A whole number from an int or its decimal text; None for anything else (bools too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,9}\s*", value):
        return int(value)
    return None


def _in_range(value: Any, low: int, high: int) -> int | None:
    number = _int(value)
    return number if number is not None and low <= number <= high else None


def _end_of_day(value: Any) -> dt.datetime:
    """The last second (UTC) of an end date given as a date, a datetime or YYYY-MM-DD text."""
    if isinstance(value, str):
        value = dt.date.fromisoformat(value.strip())  # ValueError: the caller's message
    if isinstance(value, dt.datetime):
        return naive_utc(value)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(23, 59, 59))
    raise ValueError(value)


def _check_owner(value: Any, clean: dict[str, Any], errors: dict[str, str]) -> None:
    if isinstance(value, str) and _EMAIL.match(value.strip()):
        clean["owner"] = value.strip()
    else:
        errors["owner"] = "Give the owner's email address (failure notices go there)."


def _check_command(value: Any, clean: dict[str, Any], errors: dict[str, str]) -> None:
    if not isinstance(value, str) or not value.strip():
        errors["command"] = "Enter the command line to run (with bash)."
    elif len(value) > MAX_COMMAND_CHARS:
        errors["command"] = f"Use at most {MAX_COMMAND_CHARS} characters for the command."
    elif "\x00" in value:
        errors["command"] = "The command must not contain NUL characters."
    else:
        clean["command"] = value


def _check_output_dir(value: Any, clean: dict[str, Any], errors: dict[str, str]) -> None:
    if not isinstance(value, str) or not value.strip():
        errors["output_dir"] = "Enter the output directory, relative to the unpacked tarball."
        return
    path = value.strip()
    if len(path) > MAX_OUTPUT_DIR_CHARS:
        errors["output_dir"] = (
            f"Use at most {MAX_OUTPUT_DIR_CHARS} characters for the output directory."
        )
    elif path.startswith(("/", "~")):
        errors["output_dir"] = (
            "Give the output directory relative to the unpacked tarball, not an absolute path."
        )
    elif ".." in path.strip("/").split("/"):
        errors["output_dir"] = (
            "The output directory must stay inside the unpacked tarball (no '..')."
        )
    else:
        clean["output_dir"] = path.strip("/") or "."


def _check_schedule(
    fields: Mapping[str, Any], clean: dict[str, Any], errors: dict[str, str]
) -> None:
    frequency = fields.get("frequency")
    if isinstance(frequency, Frequency):
        frequency = frequency.value
    if frequency not in FREQUENCIES:
        errors["frequency"] = "Choose daily, weekly or monthly."
    clean["frequency"] = frequency
    # Only the day the frequency needs is read; the other is cleared (the form hides it).
    clean["day_of_week"] = clean["day_of_month"] = None
    if frequency == Frequency.weekly.value:
        clean["day_of_week"] = _in_range(fields.get("day_of_week"), 0, 6)
        if clean["day_of_week"] is None:
            errors["day_of_week"] = "Choose the day of the week for a weekly job (0-6, 0 = Monday)."
    elif frequency == Frequency.monthly.value:
        clean["day_of_month"] = _in_range(fields.get("day_of_month"), *DAYS_OF_MONTH)
        if clean["day_of_month"] is None:
            errors["day_of_month"] = (
                "Enter the day of the month for a monthly job, between 1 and 31 "
                "(in shorter months a late day runs on the last day)."
            )
    clean["hour"] = _in_range(fields.get("hour"), 0, 23)
    if clean["hour"] is None:
        errors["hour"] = "Choose the hour of the day (UTC), 0-23."


def check(fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse and check a job's fields: (clean values, field -> message for every problem).

    Every field of JOB_FIELDS is checked except `tarball_key`, which is checked only when
    given: it names the stored upload, so a submission is checked before its code is stored.
    """
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    problem = name_problem(fields.get("name"))
    if problem:
        errors["name"] = problem
    else:
        clean["name"] = fields["name"]
    _check_owner(fields.get("owner"), clean, errors)
    if "tarball_key" in fields:
        key = fields["tarball_key"]
        if isinstance(key, str) and key.strip():
            clean["tarball_key"] = key
        else:
            errors["tarball_key"] = TARBALL_REQUIRED
    _check_command(fields.get("command"), clean, errors)
    _check_output_dir(fields.get("output_dir"), clean, errors)
    _check_schedule(fields, clean, errors)
    clean["timeout_minutes"] = _in_range(fields.get("timeout_minutes"), 1, MAX_TIMEOUT_MINUTES)
    if clean["timeout_minutes"] is None:
        errors["timeout_minutes"] = (
            f"Enter a whole number of minutes between 1 and {MAX_TIMEOUT_MINUTES}."
        )
    clean["enabled"] = fields.get("enabled", True)
    if not isinstance(clean["enabled"], bool):
        errors["enabled"] = "Enabled must be true or false."
    end_date = fields.get("end_date")
    clean["end_date"] = None
    if end_date not in (None, ""):
        try:
            clean["end_date"] = _end_of_day(end_date)
        except ValueError:
            errors["end_date"] = "Enter the end date as YYYY-MM-DD."
    clean["runner"] = fields.get("runner", "local")
    if clean["runner"] not in RUNNERS:
        errors["runner"] = f"Choose a runner: {' or '.join(RUNNERS)}."
    return clean, errors


def validate(fields: Mapping[str, Any]) -> dict[str, Any]:
    """`check`, raising JobValidationError (naming every bad field) instead of returning errors."""
    clean, errors = check(fields)
    if errors:
        raise JobValidationError(errors)
    return clean
