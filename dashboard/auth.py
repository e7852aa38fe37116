"""Sign-in, sign-out, the session check on every request and the `login_required` guard.

Sign-up and password reset by mailed link live in `dashboard.account`, single sign-on in
`dashboard.sso`, the sign-in throttle in `dashboard.throttle`.
"""

from __future__ import annotations

import functools
import logging
from urllib.parse import urlparse

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from dashboard import database, signin_log, throttle, web_security
from dashboard.forms import LoginForm
from dashboard.models import User
from dashboard.users import authenticate, end_sessions

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)


@bp.before_app_request
def load_signed_in_user() -> None:
    """Who is signed in: the cookie's user, if the cookie's session generation is still the
    user's (sign-out, a password change or "sign out everywhere" raised it otherwise)."""
    g.user = None
    user_id = session.get("user_id")
    if user_id is None:
        return
    user = database.db().get(User, user_id)
    if user is None or session.get("generation") != user.session_generation:
        session.clear()
        return
    g.user = user


def start_session(user: User) -> None:
    """Sign `user` in on this browser: a fresh session bound to the current generation."""
    session.clear()
    session["user_id"] = user.id
    session["generation"] = user.session_generation
    session.permanent = True
    g.user = user


def login_required(view):
    @functools.wraps(view)
    def wrapped(**kwargs):
        if g.user is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(**kwargs)

    return wrapped


def admin_required(view):
    @functools.wraps(view)
    @login_required
    def wrapped(**kwargs):
        if not g.user.is_admin:
            abort(404)
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
    if target and not any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
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


def signup_enabled() -> bool:
    return passwords_enabled() and bool(current_app.config["SIGNUP_DOMAINS"].strip())


def passwords_enabled() -> bool:
    """False when the operator switched passwords off in favour of single sign-on."""
    return bool(current_app.config.get("PASSWORD_SIGNIN", True))


def sso_enabled() -> bool:
    """Single sign-on is configured (`dashboard.sso` registers its client at start-up)."""
    return "telemetry_oidc" in current_app.extensions


def _login_page(form: LoginForm, status: int = 200, throttled: str | None = None):
    html = render_template(
        "auth/login.html",
        form=form,
        signup_enabled=signup_enabled(),
        passwords=passwords_enabled(),
        sso=sso_enabled(),
        throttled=throttled,
        cookie_lost=request.scheme == "http" and web_security.request_cookie_secure(),
    )
    return html, status


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if request.method == "POST" and not passwords_enabled():
        abort(404)
    if form.validate_on_submit():
        address = throttle.client_address()
        user = authenticate(database.db(), form.email.data, form.password.data)
        if user is None:
            form.password.errors.append("Wrong email or password.")
            signin_log.record(database.db(), form.email.data, address, "password", "refused")
            log.info("failed sign-in for %s from %s", form.email.data, address)
        else:
            start_session(user)
            signin_log.record(database.db(), user.email, address, "password", "ok")
            log.info("user %s signed in from %s", user.email, address)
            return redirect(_safe_next(request.args.get("next")))
    return _login_page(form)


@bp.app_errorhandler(429)
def too_many_requests(_error):
    """Throttled: say when to try again (on the page the person was using)."""
    wait = throttle.try_again_message(throttle.current_retry_after())
    if request.endpoint == "auth.login":
        email = request.form.get("email", "")
        signin_log.record(database.db(), email, throttle.client_address(), "password", "throttled")
        log.warning("sign-in for %s from %s throttled", email, throttle.client_address())
        form = LoginForm()
        return _login_page(form, 429, f"Too many failed sign-in attempts: {wait}.")
    return render_template("auth/throttled.html", message=wait), 429


@bp.route("/logout", methods=["POST"])
def logout():
    # POST (CSRF-checked by CSRFProtect), so another site cannot sign a user out with an <img>.
    # Raising the generation makes every copy of this user's cookie worthless, not just this one.
    if g.user is not None:
        end_sessions(database.db(), g.user)
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("auth.login"))
