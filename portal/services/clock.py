"""Time helpers the campaign and sending services share: now in UTC, stored times made aware, store zones.

SQLite hands datetimes back naive (in UTC) while PostgreSQL returns them aware, so every
comparison of a stored time goes through :func:`aware` first; a store's time zone name comes
from the database and may be missing or unknown, so :func:`zone` falls back to UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    """The current time, aware, in UTC (the default clock of a sending run)."""
    return datetime.now(timezone.utc)


def aware(value: datetime | None) -> datetime | None:
    """``value`` with UTC attached when it came back naive (SQLite); None stays None."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def zone(name: str | None) -> ZoneInfo:
    """The store's time zone, or UTC when it has none or the name is unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except Exception:
        return ZoneInfo("UTC")
