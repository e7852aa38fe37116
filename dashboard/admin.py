"""Admins' account page: recent sign-ins and failures, and "sign out everywhere" per user."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from sqlalchemy import select

from dashboard import database, signin_log
from dashboard.auth import admin_required
from dashboard.forms import ConfirmForm
from dashboard.models import User
from dashboard.users import end_sessions

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/sign-ins")
@admin_required
def sign_ins():
    session = database.db()
    users = list(session.scalars(select(User).order_by(User.email)))
    return render_template(
        "admin/sign_ins.html",
        events=signin_log.recent(session),
        users=users,
        confirm=ConfirmForm(),
    )


@bp.route("/users/<int:user_id>/sign-out-everywhere", methods=["POST"])
@admin_required
def sign_out_everywhere(user_id: int):
    session = database.db()
    user = session.get(User, user_id)
    if user is None:
        abort(404)
    end_sessions(session, user)
    flash(f"Every session of {user.email} is signed out.")
    return redirect(url_for("admin.sign_ins"))
