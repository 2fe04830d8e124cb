"""The audit log: who did what, when, with before/after where a value changed.

Services name the acting user themselves (an e-mail, or "cli" / "worker" for batch callers); the web
layer tells this module the client address of the request it is serving (``request_address``), so no
service reads Flask's request or the logged-in user.
"""

from __future__ import annotations

from contextvars import ContextVar

from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEntry

# Set by the web layer for the length of one request (portal.security.remember_client_address).
request_address: ContextVar[str | None] = ContextVar("audit_request_address", default=None)


def record(
    action: str, target: str | None = None, detail: dict | None = None, user_email: str | None = None
) -> AuditEntry:
    """Add an audit entry to the session; the calling service commits with its own change.

    ``user_email`` is the acting user; None means a batch command ("cli").
    """
    entry = AuditEntry(
        action=action, target=target, detail=detail, user_email=user_email or "cli", address=request_address.get()
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
