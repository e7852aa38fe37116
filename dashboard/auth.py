"""Sign-in, sign-out, optional sign-up, and the `login_required` guard every page uses."""

from __future__ import annotations

import functools
import logging
from urllib.parse import urlparse

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for

from dashboard import database
from dashboard.forms import LoginForm, SignupForm
from dashboard.models import User
from dashboard.users import UserError, authenticate, create_user, signup_allowed

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)


@bp.before_app_request
def load_signed_in_user() -> None:
    user_id = session.get("user_id")
    g.user = database.db().get(User, user_id) if user_id is not None else None


def login_required(view):
    @functools.wraps(view)
    def wrapped(**kwargs):
        if g.user is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(**kwargs)

    return wrapped


def owner_filter(model):
    """A WHERE clause limiting `model` rows to the signed-in user's (admins see everything)."""
    if g.user.is_admin:
        return True
    return model.owner == g.user.email


def check_owner(record) -> None:
    """404, not 403, for another user's job or worker: do not reveal that it exists."""
    if record is None or (not g.user.is_admin and record.owner != g.user.email):
        abort(404)


def _safe_next(target: str | None) -> str:
    if target:
        parsed = urlparse(target)
        if (
            not parsed.scheme
            and not parsed.netloc
            and target.startswith("/")
            and "\\" not in target
            and not target.startswith("//")
        ):
            return target
    return url_for("jobs.list_jobs")


def _signup_enabled() -> bool:
    return bool(database.settings().signup_domains.strip())


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(database.db(), form.email.data, form.password.data)
        if user is None:
            form.password.errors.append("Wrong email or password.")
            log.info("failed sign-in for %s", form.email.data)
        else:
            session.clear()
            session["user_id"] = user.id
            session.permanent = True
            log.info("user %s signed in", user.email)
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form, signup_enabled=_signup_enabled())


@bp.route("/logout", methods=["POST"])
def logout():
    # POST (CSRF-checked by CSRFProtect), so another site cannot sign a user out with an <img>.
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("auth.login"))


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    settings = database.settings()
    if not _signup_enabled():
        abort(404)
    form = SignupForm()
    if form.validate_on_submit():
        if not signup_allowed(form.email.data, settings.signup_domains):
            form.email.errors.append(
                f"Sign-up is open to addresses at {settings.signup_domains} only."
            )
        else:
            try:
                user = create_user(database.db(), form.email.data, form.password.data)
            except UserError as exc:
                form.email.errors.append(str(exc))
            else:
                session.clear()
                session["user_id"] = user.id
                log.info("user %s signed up", user.email)
                return redirect(url_for("jobs.list_jobs"))
    return render_template("auth/signup.html", form=form, domains=settings.signup_domains)
