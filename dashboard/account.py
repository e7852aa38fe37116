"""Verified sign-up, password reset and password change.

Sign-up and "forgot password" ask only for an address and mail it a signed, expiring link
(`dashboard.account_links`); following the link is the proof of owning the address, and is
where the password is chosen. So an account exists only once its owner has proved the address
(nobody can claim `ceo@example.org` by typing it, nor plant a password on someone else's
pending account), and the allowed-domain rule is applied to that proved address. Both forms
answer with the same page whether or not an account exists, and the mail is sent after the
answer (in a background thread), so neither words nor time tell.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    url_for,
)

from dashboard import account_links, database
from dashboard.auth import login_required, passwords_enabled, signup_enabled, start_session
from dashboard.forms import ChangePasswordForm, EmailForm, NewPasswordForm
from dashboard.models import User
from dashboard.users import (
    UserError,
    authenticate,
    create_user,
    find_user,
    normalise_email,
    set_password,
    signup_allowed,
)
from pipeline.config import Settings
from pipeline.mail import send_mail

log = logging.getLogger(__name__)
bp = Blueprint("account", __name__)
_mailer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="account-mail")


def link_url(settings: Settings, token: str) -> str:
    """The link's address, built on TELEMETRY_PUBLIC_BASE_URL and never on the request's Host
    header (which a client chooses: it would let an attacker mail a victim a link to their site)."""
    return settings.public_base_url.rstrip("/") + url_for("account.follow_link", token=token)


def _send_in_background(settings: Settings, to: str, subject: str, body: str) -> None:
    def send() -> None:
        try:
            send_mail(settings, to, subject, body)
        except Exception:  # noqa: BLE001 - a failed mail must be logged, the answer is given
            log.exception("could not send the account mail to %s", to)

    _mailer.submit(send)


def _mail_link(email: str, user: User | None, *, new: bool) -> None:
    settings = database.settings()
    token = account_links.make_token(current_app.config["SECRET_KEY"], email, user)
    url = link_url(settings, token)
    hours = current_app.config["ACCOUNT_LINK_MAX_AGE_HOURS"]
    if new:
        subject = "Confirm your address for the telemetry dashboard"
        intro = (
            "Someone (hopefully you) asked for a telemetry dashboard account for this address.\n"
            "Follow this link to confirm the address and choose your password:"
        )
    else:
        subject = "Choose a new password for the telemetry dashboard"
        intro = (
            "Someone (hopefully you) asked to set a new password for the telemetry dashboard\n"
            "account of this address. Follow this link to choose it:"
        )
    body = (
        f"{intro}\n\n{url}\n\nThe link works once, for {hours} hours. If you did not ask for "
        "it, ignore this mail: nothing changes."
    )
    _send_in_background(settings, email, subject, body)


def _link_sent_page(email: str):
    return render_template("auth/link_sent.html", email=email)


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    if not signup_enabled():
        abort(404)
    domains = current_app.config["SIGNUP_DOMAINS"]
    form = EmailForm()
    if form.validate_on_submit():
        email = normalise_email(form.email.data)
        if not signup_allowed(email, domains):
            form.email.errors.append(f"Sign-up is open to addresses at {domains} only.")
        else:
            user = find_user(database.db(), email)
            # An existing owner gets a link that sets a new password; the page is the same.
            _mail_link(email, user, new=user is None)
            log.info("sign-up link requested for %s", email)
            return _link_sent_page(email)
    return render_template("auth/signup.html", form=form, domains=domains)


@bp.route("/reset", methods=["GET", "POST"])
def forgot_password():
    if not passwords_enabled():
        abort(404)
    form = EmailForm()
    if form.validate_on_submit():
        email = normalise_email(form.email.data)
        user = find_user(database.db(), email)
        if user is not None:
            _mail_link(email, user, new=False)
        log.info("password reset requested for %s (%s)", email, "sent" if user else "no account")
        return _link_sent_page(email)
    return render_template("auth/forgot.html", form=form)


@bp.route("/account/link/<token>", methods=["GET", "POST"])
def follow_link(token: str):
    """The mailed link: check it, then let its reader choose the password (and sign in)."""
    if not passwords_enabled():
        abort(404)
    session = database.db()
    max_age = int(current_app.config["ACCOUNT_LINK_MAX_AGE_HOURS"] * 3600)
    try:
        email, fingerprint = account_links.read_token(
            current_app.config["SECRET_KEY"], token, max_age
        )
        user = find_user(session, email)
        account_links.check_still_valid(user, fingerprint)
        if user is None and not (
            signup_enabled() and signup_allowed(email, current_app.config["SIGNUP_DOMAINS"])
        ):
            raise account_links.LinkError("Sign-up is not open to this address.")
    except account_links.LinkError as exc:
        return render_template("auth/link_error.html", message=str(exc)), 400
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            if user is None:
                user = create_user(session, email, form.password.data)
                log.info("user %s signed up (address confirmed)", email)
                flash("Your address is confirmed and your account is ready.")
            else:
                set_password(session, user, form.password.data)
                log.info("user %s set a new password by mailed link", email)
                flash("Your new password is set; other sessions were signed out.")
        except UserError as exc:
            form.password.errors.append(str(exc))
        else:
            start_session(user)
            return redirect(url_for("jobs.list_jobs"))
    return render_template("auth/set_password.html", form=form, email=email, new=user is None)


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = ChangePasswordForm()
    user = g.user
    if form.validate_on_submit():
        session = database.db()
        if user.password_hash and authenticate(session, user.email, form.current.data) is None:
            form.current.errors.append("That is not your current password.")
        else:
            set_password(session, user, form.password.data)
            start_session(user)  # this browser stays signed in; every other session ends
            flash("Your password is changed; your other sessions are signed out.")
            return redirect(url_for("jobs.list_jobs"))
    return render_template(
        "auth/change_password.html", form=form, has_password=bool(user.password_hash)
    )
