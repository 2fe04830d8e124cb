"""Server-side limits on a login session: version, idle timeout and absolute lifetime.

The session lives in Flask's signed cookie, so the server cannot delete it; instead each session
carries what it needs to be refused: the user's ``session_version`` (inside the Flask-Login id,
"<id>:<version>", so the remember-me cookie carries it too) and the times it logged in and was last
seen. Bumping ``User.session_version`` ends every session of that user on every device.
"""

from __future__ import annotations

import time

from flask import Flask, abort, current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user, logout_user

from portal.extensions import db

LOGIN_AT = "login_at"
SEEN_AT = "seen_at"
# A request refreshes "last seen" at most once a minute, so most responses leave the cookie alone.
SEEN_RESOLUTION = 60

MESSAGES = {
    "ended": "Your session was ended (logged out elsewhere, or the password changed): please log in again.",
    "idle": "You were logged out after {idle} minutes without activity: please log in again.",
    "expired": "Your session reached its {hours}-hour limit: please log in again.",
}


def now() -> float:
    """The session clock (seconds since the epoch); tests replace it instead of sleeping."""
    return time.time()


def load_user(value: str):
    """Flask-Login's user loader: the user, or None when the id is malformed or its version is stale."""
    from portal.models import User

    raw_id, sep, raw_version = (value or "").partition(":")
    if not (sep and raw_id.isascii() and raw_id.isdigit() and raw_version.isascii() and raw_version.isdigit()):
        return None  # includes ids written before versions existed: those sessions log in again
    user = db.session.get(User, int(raw_id))
    if user is None:
        return None
    if int(raw_version) != (user.session_version or 0):
        g.session_refused = "ended"
        return None
    return user


def stamp(fresh_login: bool = True) -> None:
    """Record the login time (on a new login) and the last-seen time in the signed session."""
    moment = int(now())
    if fresh_login or LOGIN_AT not in session:
        session[LOGIN_AT] = moment
    session[SEEN_AT] = moment
    session.permanent = True


def enforce():
    """Before each request: log out a session whose version is stale or that is idle or too old.

    The times come from the signed session, not from the cookie's expiry (a client keeps a cookie
    as long as it likes). A refused session goes to /login with the reason.
    """
    if request.endpoint == "static" or "_user_id" not in session:
        return None
    reason = None
    if current_user.is_authenticated:  # loads the user; a stale version leaves g.session_refused
        moment = now()
        login_at, seen_at = session.get(LOGIN_AT), session.get(SEEN_AT)
        idle = current_app.config["SESSION_IDLE_MINUTES"] * 60
        lifetime = current_app.config["SESSION_MAX_HOURS"] * 3600
        if not isinstance(login_at, int) or not isinstance(seen_at, int) or moment - login_at > lifetime:
            reason = "expired"
        elif moment - seen_at > idle:
            reason = "idle"
        elif moment - seen_at >= SEEN_RESOLUTION:
            session[SEEN_AT] = int(moment)
    else:
        reason = g.pop("session_refused", None) or "ended"
    if reason is None:
        return None
    logout_user()
    session.pop(LOGIN_AT, None)
    session.pop(SEEN_AT, None)
    flash(
        MESSAGES[reason].format(
            idle=current_app.config["SESSION_IDLE_MINUTES"], hours=current_app.config["SESSION_MAX_HOURS"]
        ),
        "warning",
    )
    if request.endpoint == "auth.login":
        return None
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        abort(401)
    return redirect(
        url_for("auth.login", next=request.full_path.rstrip("?")) if request.method == "GET" else url_for("auth.login")
    )


def register(app: Flask) -> None:
    """Use versioned ids in Flask-Login and check every session before the login gate runs."""
    from portal.extensions import login_manager

    login_manager.user_loader(load_user)
    app.before_request(enforce)
