"""Customers' replies that are not STOP/HELP/START: unread for the store's managers until they view them.

``sms_events`` already stores every inbound message (``keyword`` is set only for STOP/HELP/START
words); ``read_at`` marks a reply as seen. A reply belongs to the store of the customer whose phone
sent it, so a manager counts and reads only their own store's customers' replies.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from portal.extensions import db
from portal.models import Customer, SmsEvent
from portal.security import scope_to_user
from portal.services.clock import utcnow


def _replies(user):
    query = (
        select(SmsEvent.id)
        .join(Customer, Customer.phone == SmsEvent.from_phone)
        .where(SmsEvent.kind == "inbound", SmsEvent.keyword.is_(None), Customer.erased_at.is_(None))
    )
    return scope_to_user(query, Customer.store_id, user)


def unread_count(user) -> int:
    """Unread replies of the customers ``user`` may see."""
    ids = _replies(user).where(SmsEvent.read_at.is_(None)).distinct().subquery()
    return db.session.scalar(select(func.count()).select_from(ids)) or 0


def recent(user, limit: int = 100) -> list[dict]:
    """The latest replies ``user`` may see: customer, phone, text, received, read."""
    rows = db.session.execute(
        scope_to_user(
            select(SmsEvent, Customer)
            .join(Customer, Customer.phone == SmsEvent.from_phone)
            .where(SmsEvent.kind == "inbound", SmsEvent.keyword.is_(None), Customer.erased_at.is_(None)),
            Customer.store_id,
            user,
        )
        .order_by(SmsEvent.received_at.desc(), SmsEvent.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "id": event.id,
            "customer": customer,
            "phone": event.from_phone,
            "body": (event.payload or {}).get("Body", ""),
            "received_at": event.received_at,
            "unread": event.read_at is None,
        }
        for event, customer in rows
    ]


def mark_read(user, now: datetime | None = None) -> int:
    """Mark every reply ``user`` may see as read (they have just been shown); commits; returns how many."""
    ids = _replies(user).where(SmsEvent.read_at.is_(None)).scalar_subquery()
    result = db.session.execute(
        update(SmsEvent)
        .where(SmsEvent.id.in_(ids))
        .values(read_at=now or utcnow(), read_by=getattr(user, "email", None)),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    return result.rowcount
