"""The audit log: who did what, when, with before/after where a value changed."""
from __future__ import annotations

from flask import has_request_context, request
from flask_login import current_user
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEntry


def actor_email() -> str | None:
    """The logged-in user's e-mail, or None outside a request (CLI callers pass their own)."""
    if has_request_context() and getattr(current_user, "is_authenticated", False):
        return current_user.email
    return None


def record(action: str, target: str | None = None, detail: dict | None = None,
           user_email: str | None = None) -> AuditEntry:
    """Add an audit entry to the session; the calling service commits with its own change."""
    entry = AuditEntry(
        action=action,
        target=target,
        detail=detail,
        user_email=user_email or actor_email() or "cli",
        address=request.remote_addr if has_request_context() else None,
    )
    db.session.add(entry)
    return entry


def entries_query(user: str = "", action: str = ""):
    """The audit log, newest first, filtered by a user e-mail fragment and an action prefix."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    if user:
        query = query.where(AuditEntry.user_email.ilike(f"%{user}%"))
    if action:
        query = query.where(AuditEntry.action.ilike(f"{action}%"))
    return query
