"""Access rules shared by every blueprint: login by default, roles, store scoping, safe redirects."""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlsplit

from flask import abort, current_app, redirect, request, url_for
from flask_login import current_user

from portal.services import audit

# Endpoints reachable without logging in; everything else needs a session (checked before each request).
PUBLIC_ENDPOINTS = {
    "auth.login",
    "health.healthz",
    "health.readyz",
    "static",
    "webhooks.sms_inbound",
    "webhooks.sms_status",
    "mail.unsubscribe",  # the signed link in every e-mail works without logging in
}


def public(view):
    """Mark a view as reachable without login (the allow-list above is the source of truth)."""
    view.is_public = True
    return view


def require_login():
    """Before every request: anonymous users go to /login, except on the public endpoints."""
    if request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
            abort(401)
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return None


def remember_client_address():
    """Before every request: tell the audit service the client's address (services never read the request)."""
    audit.request_address.set(request.remote_addr)
    return None


def reject_nul_bytes():
    """Before every request: refuse text with NUL bytes (PostgreSQL cannot store them) with a 400."""
    for values in (request.args, request.form):
        for value in values.values():
            if "\x00" in value:
                abort(400)
    return None


def roles_required(*roles: str):
    """Refuse (403) a logged-in user whose role is not among ``roles``; checked on the server."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def user_store_id(user=None) -> int | None:
    """The store a user is limited to (managers and store-bound marketers), None for all stores."""
    user = user or current_user
    if user.role == "admin":
        return None
    return user.store_id


def scope_to_user(query, store_column, user=None):
    """Apply the user's store scoping to a query in one place, for every list and page."""
    user = user or current_user
    store_id = user_store_id(user)
    if store_id is not None:
        return query.filter(store_column == store_id)
    if user.role == "manager":  # a manager without a store sees nothing rather than everything
        return query.filter(store_column.is_(None) & store_column.isnot(None))
    return query


def is_safe_next(target: str | None) -> bool:
    """Accept ``next=`` only as a local path (no scheme, no host, no protocol-relative //, no control characters)."""
    if not target or any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in target):
        return False  # CR/LF would split the Location header (a 500), other controls have no place in a path
    parts = urlsplit(target)
    return (
        not parts.scheme
        and not parts.netloc
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
    )


def set_security_headers(response):
    """Send the security headers on every response (CSP without inline scripts; no-store once logged in)."""
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'self'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.endpoint != "static" and (request.endpoint == "auth.login" or current_user.is_authenticated):
        # Pages behind the login show personal data: no browser or proxy may keep a copy.
        response.headers["Cache-Control"] = "no-store"
    return response
