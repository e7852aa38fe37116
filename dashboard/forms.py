"""Flask-WTF forms: every field validated server-side, errors shown beside the field."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    EqualTo,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    Regexp,
)

from dashboard.formatting import WEEKDAYS
from dashboard.users import EMAIL_PATTERN, MIN_PASSWORD_LENGTH
from scheduler.models import JOB_NAME_PATTERN

try:  # WTForms >= 3.3 deprecates plain tuples for choices
    from wtforms.fields.choices import SelectChoice as _Choice
except ImportError:  # pragma: no cover - older WTForms

    def _Choice(value, label):  # noqa: N802
        return (value, label)


def choices(pairs):
    return [_Choice(value, label) for value, label in pairs]


NAME_RULE = "letters, digits, '-' and '_' only, at most 100 characters"
# One wording for a bad name wherever it is checked (form, live check, API): the pattern
# also bounds the length, so no separate length message repeats it in other words.
NAME_RULE_MESSAGE = f"Use {NAME_RULE}."


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


def _optional_int(value):
    return int(value) if value not in (None, "", "None") else None


class JobForm(FlaskForm):
    """The "Schedule a Job" form; the tarball is required only when creating."""

    name = StringField(
        "Job Name",
        validators=[
            DataRequired("Enter a job name."),
            Regexp(JOB_NAME_PATTERN, message=NAME_RULE_MESSAGE),
        ],
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
        validators=[DataRequired(), Length(max=2000)],
        description="Run with bash from the top of the unpacked tarball, e.g. bash run.sh or "
        "python analysis.py (a script started as ./run.sh must be executable: chmod +x it "
        "before packing). A non-zero exit code marks the run failed.",
    )
    output_dir = StringField(
        "Output Directory",
        default="output",
        validators=[DataRequired(), Length(max=500)],
        description="Relative to the unpacked tarball. Every file your command leaves here is "
        "published publicly after a successful run; keep raw records out of it.",
    )
    frequency = SelectField(
        "Schedule Frequency",
        choices=choices([("daily", "Daily"), ("weekly", "Weekly"), ("monthly", "Monthly")]),
        default="daily",
        validators=[DataRequired()],
        description="How often the job runs.",
    )
    day_of_week = SelectField(
        "Day of Week",
        choices=choices([("", "—")] + [(str(i), day) for i, day in enumerate(WEEKDAYS)]),
        coerce=_optional_int,
        validators=[Optional()],
        description="For weekly jobs: the day (UTC) it runs on.",
    )
    day_of_month = IntegerField(
        "Day of Month",
        validators=[Optional(), NumberRange(1, 31, "Choose a day between 1 and 31.")],
        description="For monthly jobs: 1 to 31; in shorter months a late day runs on the last day.",
    )
    hour = SelectField(
        "Time of Day (UTC)",
        choices=choices([(str(h), f"{h:02d}:00 UTC") for h in range(24)]),
        coerce=int,
        default="12",
        description="The hour the job starts, in UTC (not your local time). Default noon UTC.",
    )
    timeout_minutes = IntegerField(
        "Job Timeout (minutes)",
        default=60,
        validators=[
            InputRequired("Enter a whole number of minutes."),
            NumberRange(1, 24 * 60, "Between 1 and 1440 minutes."),
        ],
        description="A run still going after this many minutes is killed (with all its child "
        "processes) and marked timed out.",
    )
    end_date = DateField(
        "End Date (UTC, optional)",
        validators=[Optional()],
        description="The job stops running after this day (UTC). Leave empty to run until you delete it.",
    )
    enabled = BooleanField(
        "Enabled", default=True, description="Disabled jobs keep their history but do not run."
    )

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        if self.frequency.data == "weekly" and self.day_of_week.data is None:
            self.day_of_week.errors = [
                *self.day_of_week.errors,
                "Choose the day of the week for a weekly job.",
            ]
            ok = False
        if (
            self.frequency.data == "monthly"
            and self.day_of_month.data is None
            and not self.day_of_month.errors
        ):
            self.day_of_month.errors = [
                *self.day_of_month.errors,
                "Enter the day of the month for a monthly job.",
            ]
            ok = False
        return ok


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
