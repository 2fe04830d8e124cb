"""Login, logout and changing one's own password."""

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from portal import login_sessions
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
        wait = accounts.throttle_wait(form.email.data, address)
        if wait:
            form.email.errors.append(f"Too many failed attempts: wait {_duration(wait)} and try again.")
            return render_template("auth/login.html", form=form), 429, {"Retry-After": str(wait)}
        user = accounts.authenticate(form.email.data, form.password.data, address)
        if user is None:
            form.password.errors.append("Wrong e-mail or password.")
            return render_template("auth/login.html", form=form), 401
        login_user(user)
        login_sessions.stamp()
        target = form.next.data
        return redirect(target if is_safe_next(target) else url_for("dashboard.index"))
    return render_template("auth/login.html", form=form)


def _duration(seconds: int) -> str:
    return f"{seconds} seconds" if seconds < 120 else f"{(seconds + 59) // 60} minutes"


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        accounts.logout(current_user)  # ends this user's sessions on every device
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
        except accounts.WeakPasswordError as exc:
            form.new.errors.append(str(exc))
        except accounts.AccountError as exc:
            form.current.errors.append(str(exc))
        else:
            login_user(current_user._get_current_object())  # re-stamp this session with the new version
            flash("Password changed; your other sessions were logged out.", "success")
            return redirect(url_for("dashboard.index"))
    return render_template("auth/password.html", form=form)
