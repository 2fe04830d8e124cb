"""The audit log: who did what, when, with before/after where a value changed.

Services name the acting user themselves (an e-mail, or "cli" / "worker" for batch callers); the web
layer tells this module the client address of the request it is serving (``request_address``), so no
service reads Flask's request or the logged-in user.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

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


class AuditFilterError(ValueError):
    """A filter value the audit log cannot use; the message says what to type instead."""


def parse_day(text: str, label: str) -> date | None:
    """A ``YYYY-MM-DD`` filter value (empty: no limit), or AuditFilterError naming the field."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise AuditFilterError(f"{label}: “{text}” is not a date; use YYYY-MM-DD, e.g. 2026-11-21.") from None


def entries_query(
    user: str = "",
    action: str = "",
    date_from: date | None = None,
    date_to: date | None = None,
    tz: str = "UTC",
):
    """The audit log, newest first, filtered by a user e-mail fragment, an action prefix and a date range.

    ``date_from`` and ``date_to`` are whole days (both included) in the time zone ``tz`` (the viewer's),
    turned into UTC instants here so the filter stays an index range on ``at``.
    """
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    if user:
        query = query.where(AuditEntry.user_email.ilike(f"%{user}%"))
    if action:
        query = query.where(AuditEntry.action.ilike(f"{action}%"))
    zone = ZoneInfo(tz or "UTC")
    if date_from is not None:
        start = datetime.combine(date_from, time.min, zone).astimezone(timezone.utc)
        query = query.where(AuditEntry.at >= start)
    if date_to is not None:
        end = datetime.combine(date_to + timedelta(days=1), time.min, zone).astimezone(timezone.utc)
        query = query.where(AuditEntry.at < end)
    return query


def actions() -> list[str]:
    """Every action the log holds, for the page's action filter (one indexed DISTINCT)."""
    return list(db.session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))


def users() -> list[str]:
    """Every acting user the log names, for the page's user filter."""
    return list(
        db.session.scalars(
            select(AuditEntry.user_email)
            .where(AuditEntry.user_email.isnot(None))
            .distinct()
            .order_by(AuditEntry.user_email)
        )
    )


def _text(value: Any) -> str:
    """One detail value as plain text: lists joined, nested mappings as ``key: value``, no JSON escapes."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) < 1e15 else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items()) or "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value) or "—"
    return str(value)


def readable(detail: Any) -> list[tuple[str, str]]:
    """An entry's detail as (key, text) pairs for the page: ``before: 0.1``, ``filter: band=High&tier=Gold``."""
    if detail is None or detail == {}:
        return []
    if not isinstance(detail, dict):
        return [("detail", _text(detail))]
    return [(str(key).replace("_", " "), _text(value)) for key, value in detail.items()]
