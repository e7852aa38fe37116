"""Account page: create and revoke API tokens for the JSON API."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for
from sqlalchemy import select

from dashboard import database
from dashboard.api_tokens import create_token
from dashboard.auth import login_required
from dashboard.forms import ConfirmForm, TokenForm
from dashboard.models import ApiToken

bp = Blueprint("tokens", __name__)


@bp.route("/account/tokens", methods=["GET", "POST"])
@login_required
def list_tokens():
    form = TokenForm()
    secret = None
    session = database.db()
    if form.validate_on_submit():
        _token, secret = create_token(session, g.user, form.label.data)
        form = TokenForm(formdata=None)
    tokens = list(
        session.scalars(select(ApiToken).where(ApiToken.user_id == g.user.id).order_by(ApiToken.id))
    )
    return render_template(
        "tokens.html", form=form, tokens=tokens, secret=secret, confirm=ConfirmForm()
    )


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def revoke(token_id: int):
    session = database.db()
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != g.user.id:
        abort(404)
    session.delete(token)
    session.commit()
    flash(f"Token {token.label!r} is revoked.")
    return redirect(url_for("tokens.list_tokens"))
