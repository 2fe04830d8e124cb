"""/account/tokens: a user's API tokens (admins: anyone's, from the users page). Secrets are shown once."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm

from portal.account.forms import TokenForm
from portal.models import User
from portal.params import parse_id
from portal.services import accounts, api_tokens

bp = Blueprint("account", __name__)


def _owner() -> User:
    """The user whose tokens the page shows: yourself, or (admins only) the ``?user=`` id."""
    raw = request.args.get("user")
    if raw is None:
        return current_user
    user_id = parse_id(raw)
    if current_user.role != "admin" or user_id is None:
        abort(404)
    user = accounts.get_user(user_id)
    if user is None:
        abort(404)
    return user


@bp.route("/account/tokens", methods=["GET", "POST"])
def tokens():
    """List the tokens, create one (its secret shown once in this response), revoke from the list."""
    owner = _owner()
    form = TokenForm()
    secret = None
    if form.validate_on_submit():
        try:
            token, secret = api_tokens.create(owner, form.name.data, form.days.data, current_user)
        except api_tokens.TokenError as exc:
            form.name.errors.append(str(exc))
        else:
            flash(f"Token “{token.name}” created. Copy it now: it is not shown again.", "success")
            form = TokenForm(formdata=None)
    return render_template(
        "account/tokens.html",
        owner=owner,
        form=form,
        secret=secret,
        tokens=api_tokens.tokens_of(owner),
        state=api_tokens.state,
        revoke_form=FlaskForm(),
    )


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
def revoke(token_id: int):
    token = api_tokens.get_manageable(token_id, current_user)
    if token is None:
        abort(404)
    if not FlaskForm().validate_on_submit():
        abort(400)
    try:
        api_tokens.revoke(token, current_user)
    except api_tokens.TokenError as exc:
        flash(str(exc), "warning")
    else:
        flash(f"Token “{token.name}” revoked: it is refused from now on.", "success")
    args = {"user": token.user_id} if token.user_id != current_user.id else {}
    return redirect(url_for("account.tokens", **args))
