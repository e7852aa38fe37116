"""Flask-WTF forms: every field validated server-side, errors shown beside the field.

A job's fields are validated by the scheduler's `job_spec` (see JobForm), not here.
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    EqualTo,
    Length,
    Regexp,
)
from wtforms.widgets import DateInput, NumberInput

from dashboard.formatting import WEEKDAYS
from dashboard.users import EMAIL_PATTERN, MIN_PASSWORD_LENGTH
from scheduler.job_spec import (
    DAYS_OF_MONTH,
    MAX_COMMAND_CHARS,
    MAX_NAME_CHARS,
    MAX_OUTPUT_DIR_CHARS,
    MAX_TIMEOUT_MINUTES,
    NAME_RULE,
    NAME_RULE_MESSAGE,
    OWNER_FIELDS,
)
from scheduler.models import JOB_NAME_PATTERN, Job

try:  # WTForms >= 3.3 deprecates plain tuples for choices
    from wtforms.fields.choices import SelectChoice as _Choice
except ImportError:  # pragma: no cover - older WTForms

    def _Choice(value, label):  # noqa: N802
        return (value, label)


def choices(pairs):
    return [_Choice(value, label) for value, label in pairs]


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=500)])


class EmailForm(FlaskForm):
    """Sign-up and "forgot password": only the address; the mailed link does the rest."""

    email = EmailField(
        "Email",
        validators=[
            DataRequired(),
            Length(max=320),
            Regexp(EMAIL_PATTERN, message="Enter an email address."),
        ],
    )


def _new_password_field(label: str = "Password") -> PasswordField:
    return PasswordField(
        label,
        validators=[
            DataRequired(),
            Length(
                min=MIN_PASSWORD_LENGTH,
                max=500,
                message=f"Use at least {MIN_PASSWORD_LENGTH} characters (at most 500).",
            ),
        ],
    )


class NewPasswordForm(FlaskForm):
    """Choosing a password after following a mailed link."""

    password = _new_password_field()
    confirm = PasswordField(
        "Repeat password", validators=[DataRequired(), EqualTo("password", "The passwords differ.")]
    )


class ChangePasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[Length(max=500)])
    password = _new_password_field("New password")
    confirm = PasswordField(
        "Repeat new password",
        validators=[DataRequired(), EqualTo("password", "The passwords differ.")],
    )


class JobForm(FlaskForm):
    """The "Schedule a Job" form: labels, help and widgets only.

    Its fields carry no rules: `submitted()` hands the text as sent to the scheduler's
    `job_spec` (through `dashboard.job_actions`), which the API and `python -m scheduler add`
    use too, so every problem is worded once. `render_kw` sets the browser's own hints
    (required, min, max) from the same limits.
    """

    owner_fields = OWNER_FIELDS  # what the template shows below the name and tarball

    name = StringField(
        "Job Name",
        render_kw={"required": True, "maxlength": MAX_NAME_CHARS},
        description=f"A unique name ({NAME_RULE}). Published files appear under "
        "/public/<name>/data/, so choose something others will recognise.",
    )
    tarball = FileField(
        "Code Tarball",
        description="A .tar.gz or .tgz archive with your code. It is unpacked into a fresh "
        "directory for every run; paths must stay inside it (no absolute paths or '..').",
    )
    command = TextAreaField(
        "Execution Commandline",
        render_kw={"required": True, "rows": 3, "maxlength": MAX_COMMAND_CHARS},
        description="Run with bash from the top of the unpacked tarball, e.g. bash run.sh or "
        "python analysis.py (a script started as ./run.sh must be executable: chmod +x it "
        "before packing). A non-zero exit code marks the run failed.",
    )
    output_dir = StringField(
        "Output Directory",
        default="output",
        render_kw={"required": True, "maxlength": MAX_OUTPUT_DIR_CHARS},
        description="Relative to the unpacked tarball. Every file your command leaves here is "
        "published publicly after a successful run; keep raw records out of it.",
    )
    frequency = SelectField(
        "Schedule Frequency",
        choices=choices([("daily", "Daily"), ("weekly", "Weekly"), ("monthly", "Monthly")]),
        default="daily",
        validate_choice=False,
        render_kw={"required": True},
        description="How often the job runs.",
    )
    day_of_week = SelectField(
        "Day of Week",
        choices=choices([("", "—")] + [(str(i), day) for i, day in enumerate(WEEKDAYS)]),
        validate_choice=False,
        description="For weekly jobs: the day (UTC) it runs on.",
    )
    day_of_month = StringField(
        "Day of Month",
        widget=NumberInput(min=DAYS_OF_MONTH[0], max=DAYS_OF_MONTH[1]),
        description="For monthly jobs: 1 to 31; in shorter months a late day runs on the last day.",
    )
    hour = SelectField(
        "Time of Day (UTC)",
        choices=choices([(str(h), f"{h:02d}:00 UTC") for h in range(24)]),
        default="12",
        validate_choice=False,
        description="The hour the job starts, in UTC (not your local time). Default noon UTC.",
    )
    timeout_minutes = StringField(
        "Job Timeout (minutes)",
        default="60",
        widget=NumberInput(min=1, max=MAX_TIMEOUT_MINUTES),
        render_kw={"required": True},
        description="A run still going after this many minutes is killed (with all its child "
        "processes) and marked timed out.",
    )
    end_date = StringField(
        "End Date (UTC, optional)",
        widget=DateInput(),
        description="The job stops running after this day (UTC). Leave empty to run until you delete it.",
    )
    enabled = BooleanField(
        "Enabled", default=True, description="Disabled jobs keep their history but do not run."
    )

    def submitted(self) -> dict[str, Any]:
        """The owner's fields as sent (text; `enabled` as the checkbox says), for job_spec."""
        return {name: self[name].data for name in OWNER_FIELDS}

    @classmethod
    def for_job(cls, job: Job) -> JobForm:
        """The form filled with a job's current values, as the browser would send them back."""
        form = cls(obj=job)
        form.end_date.data = job.end_date.date().isoformat() if job.end_date else ""
        return form


class ConfirmForm(FlaskForm):
    """An empty form: buttons that change state (delete, run now, kill) still need CSRF."""


class WorkerForm(FlaskForm):
    name = StringField(
        "Worker Name",
        validators=[
            DataRequired("Enter a worker name."),
            Regexp(JOB_NAME_PATTERN, message=NAME_RULE_MESSAGE),
        ],
        description=f"A name to recognise the machine by ({NAME_RULE}; no spaces).",
    )
    ssh_public_key = TextAreaField(
        "SSH Public Key",
        validators=[DataRequired(), Length(max=16000)],
        description="The contents of your ~/.ssh/id_ed25519.pub (or id_rsa.pub): one line "
        "starting with ssh-ed25519, ssh-rsa or ecdsa-sha2-….",
    )


class TokenForm(FlaskForm):
    label = StringField(
        "Label",
        validators=[DataRequired(), Length(max=100)],
        description="What the token is for, e.g. 'laptop CLI'.",
    )
