"""Mail rows: one per (user, kind, event or period key), claimed before sending, sent at most once.

Exactly once: the row is inserted with ON CONFLICT DO NOTHING on its unique key (never
check-then-insert), so however many jobs build the same mail only one row exists. A worker moves a
row pending → sending with one compare-and-set UPDATE and commits **before** talking to SMTP, then
records sent / logged / failed, or pending again with a backoff when nothing was sent for certain.

The rule for a row stuck in 'sending' (its worker died, or the connection broke after the message was
handed over): SMTP has no way to ask whether a message arrived, so it is never re-sent by itself.
After ``LEASE`` it becomes 'unknown' and stays on /admin/mail; a missed alert is better than a
duplicate, and the next week's digest comes anyway.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from portal.extensions import db
from portal.models import MailMessage, User
from portal.services.clock import utcnow
from portal.services.mail import transport

LEASE = timedelta(minutes=10)
MAX_ATTEMPTS = 5
BACKOFF = timedelta(minutes=5)
STATUSES = ("pending", "sending", "sent", "logged", "failed", "unknown")
# Plain UPDATEs: rows in the session are not compared in Python (SQLite's naive times vs aware ones).
NO_SYNC = {"synchronize_session": False}


def insert_ignore(model):
    """``INSERT … ON CONFLICT DO NOTHING RETURNING <key>`` for the current database (PostgreSQL or SQLite).

    Whether the row was new is whether the result has a row (``inserted``): rowcount is -1 on PostgreSQL here.
    """
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    table = model.__table__
    return dialect.insert(table).on_conflict_do_nothing().returning(*table.primary_key.columns)


def inserted(result) -> bool:
    """True when an ``insert_ignore`` statement wrote its row (False: the key existed)."""
    return result.first() is not None


def exists(user_id: int, kind: str, key: str) -> bool:
    """Whether the mail was built already: lets a job skip building it again (the insert still decides)."""
    return (
        db.session.scalar(
            select(func.count()).where(
                MailMessage.user_id == user_id, MailMessage.kind == kind, MailMessage.event_key == key
            )
        )
        > 0
    )


def add(
    user: User,
    kind: str,
    key: str,
    store_id: int | None,
    subject: str,
    text: str,
    html: str,
    unsubscribe_url: str | None,
) -> bool:
    """Queue a mail (commits); False when this user already has this mail for this key."""
    result = db.session.execute(
        insert_ignore(MailMessage).values(
            user_id=user.id,
            to_address=user.email,
            kind=kind,
            event_key=key,
            store_id=store_id,
            subject=subject[:300],
            body_text=text,
            body_html=html,
            unsubscribe_url=unsubscribe_url,
            status="pending",
            attempts=0,
            created_at=utcnow(),
        )
    )
    new = inserted(result)
    db.session.commit()
    return new


def recover_stuck(now: datetime | None = None) -> int:
    """Rows left in 'sending' past the lease become 'unknown' (never re-sent by themselves); returns how many."""
    now = now or utcnow()
    moved = db.session.execute(
        update(MailMessage)
        .where(MailMessage.status == "sending", MailMessage.claimed_at < now - LEASE)
        .values(
            status="unknown",
            claimed_by=None,
            error="The worker stopped while sending: it may have arrived, so it is not sent again.",
        ),
        execution_options=NO_SYNC,
    ).rowcount
    db.session.commit()
    return moved


def _claim(row_id: int, token: str, now: datetime) -> bool:
    moved = db.session.execute(
        update(MailMessage)
        .where(MailMessage.id == row_id, MailMessage.status == "pending")
        .values(status="sending", claimed_by=token, claimed_at=now, attempts=MailMessage.attempts + 1),
        execution_options=NO_SYNC,
    ).rowcount
    db.session.commit()
    return moved == 1


def _record(row_id: int, token: str, **values) -> None:
    db.session.execute(
        update(MailMessage)
        .where(MailMessage.id == row_id, MailMessage.status == "sending", MailMessage.claimed_by == token)
        .values(**values),
        execution_options=NO_SYNC,
    )
    db.session.commit()


def message_id(row: MailMessage) -> str:
    """A Message-ID fixed per row, so a copy sent by hand is recognised as the same mail by mail clients."""
    digest = hashlib.sha256(f"{row.user_id}:{row.kind}:{row.event_key}".encode()).hexdigest()[:16]
    return f"<loyalist.{row.id}.{digest}@{socket.gethostname() or 'localhost'}>"


def deliver(limit: int = 500, now: datetime | None = None) -> dict[str, int]:
    """Send (or log) every due pending row, each at most once; returns counts by outcome."""
    now = now or utcnow()
    recover_stuck(now)
    token = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:10]}"
    due = db.session.scalars(
        select(MailMessage.id)
        .where(
            MailMessage.status == "pending",
            (MailMessage.next_attempt_at.is_(None)) | (MailMessage.next_attempt_at <= now),
        )
        .order_by(MailMessage.id)
        .limit(limit)
    ).all()
    counts: dict[str, int] = {}
    if not due:
        return counts
    with transport.Connection() as conn:
        for row_id in due:
            if not _claim(row_id, token, utcnow()):
                continue  # another worker has it
            row = db.session.get(MailMessage, row_id)
            headers = {"Auto-Submitted": "auto-generated"}
            if row.unsubscribe_url:
                headers["List-Unsubscribe"] = f"<{row.unsubscribe_url}>"
                headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            mid = message_id(row)
            outcome = conn.send(row.to_address, row.subject, row.body_text, row.body_html, headers, mid)
            status = outcome.status
            if status in ("sent", "logged"):
                _record(row_id, token, status=status, sent_at=utcnow(), message_id=mid, error=None, claimed_by=None)
            elif status == "retry" and row.attempts < MAX_ATTEMPTS:
                _record(
                    row_id,
                    token,
                    status="pending",
                    claimed_by=None,
                    error=outcome.error,
                    next_attempt_at=utcnow() + BACKOFF * 2 ** (row.attempts - 1),
                )
            elif status == "retry":
                status = "failed"
                _record(row_id, token, status="failed", claimed_by=None, error=f"gave up: {outcome.error}")
            else:  # failed (refused for good) or unknown (may have arrived)
                _record(row_id, token, status=status, claimed_by=None, error=outcome.error, message_id=mid)
            counts[status] = counts.get(status, 0) + 1
    return counts


def log_query(kind: str | None = None, status: str | None = None, to: str | None = None):
    """The admin mail log (newest first is the page's order), filtered by kind, status and recipient."""
    query = select(MailMessage)
    if kind:
        query = query.where(MailMessage.kind == kind)
    if status:
        query = query.where(MailMessage.status == status)
    if to:
        query = query.where(MailMessage.to_address.ilike(f"%{to.strip()}%"))
    return query


def status_counts() -> dict[str, int]:
    """Mail rows per status (the admin page's header)."""
    return dict(db.session.execute(select(MailMessage.status, func.count()).group_by(MailMessage.status)).all())
