"""Login, logout and changing one's own password."""
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from portal.auth.forms import ChangePasswordForm, LoginForm
from portal.security import is_safe_next
from portal.services import accounts

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        address = request.remote_addr or "unknown"
        if accounts.throttled(form.email.data, address):
            form.email.errors.append("Too many failed attempts: wait 15 minutes and try again.")
            return render_template("auth/login.html", form=form), 429
        user = accounts.authenticate(form.email.data, form.password.data, address)
        if user is None:
            form.password.errors.append("Wrong e-mail or password.")
            return render_template("auth/login.html", form=form), 401
        login_user(user)
        target = form.next.data
        return redirect(target if is_safe_next(target) else url_for("dashboard.index"))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            accounts.change_own_password(current_user, form.current.data, form.new.data)
        except accounts.AccountError as exc:
            form.current.errors.append(str(exc))
        else:
            flash("Password changed.", "success")
            return redirect(url_for("dashboard.index"))
    return render_template("auth/password.html", form=form)
