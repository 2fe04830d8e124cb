"""Customers' replies that are not STOP/HELP/START: unread for the store's managers until they view them.

``sms_events`` already stores every inbound message (``keyword`` is set only for STOP/HELP/START
words); ``read_at`` marks a reply as seen. A reply belongs to the store of the customer whose phone
sent it, so a manager counts and reads only their own store's customers' replies.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, exists, func, select, update

from portal.extensions import db
from portal.models import AuditEntry, Customer, SmsEvent
from portal.security import scope_to_user, user_store_id
from portal.services.clock import utcnow
from portal.services.flows import guards


def _replies(user):
    query = (
        select(SmsEvent.id)
        .join(Customer, Customer.phone == SmsEvent.from_phone)
        .where(SmsEvent.kind == "inbound", SmsEvent.keyword.is_(None), Customer.erased_at.is_(None))
    )
    return scope_to_user(query, Customer.store_id, user)


def _unread_count_statement(scoped: bool):
    query = (
        select(SmsEvent.id)
        .join(Customer, Customer.phone == SmsEvent.from_phone)
        .where(SmsEvent.kind == "inbound", SmsEvent.keyword.is_(None), Customer.erased_at.is_(None))
        .where(SmsEvent.read_at.is_(None))
    )
    if scoped:
        query = query.where(Customer.store_id == bindparam("store_id"))
    return select(func.count()).select_from(query.distinct().subquery())


# Built once: every page's banner counts unread replies (chain-wide for admins, one store for store users).
_UNREAD_ALL, _UNREAD_STORE = _unread_count_statement(False), _unread_count_statement(True)


# An admin's banner in one query: the unread count and whether any store's automations stopped for the budget
# lately (then ``guards.paused_stores`` says which; usually none did, so that is the only query).
_ADMIN_BANNER = select(
    _UNREAD_ALL.scalar_subquery(),
    exists().where(
        AuditEntry.action == "flows.budget_reached", AuditEntry.at >= bindparam("since", type_=AuditEntry.at.type)
    ),
)


def banner(user, now: datetime) -> dict:
    """What every page's banner shows: ``unread`` replies (admins, managers) and stores ``paused`` by the SMS
    budget this month (admins; ``guards.paused_stores``)."""
    if user.role != "admin":
        return {"unread": unread_count(user), "paused": []}
    unread, stopped = db.session.execute(_ADMIN_BANNER, {"since": guards.stops_since(now)}).one()
    return {"unread": unread or 0, "paused": guards.paused_stores(now) if stopped else []}


def unread_count(user) -> int:
    """Unread replies of the customers ``user`` may see (the scope of ``scope_to_user``)."""
    store_id = user_store_id(user)
    if store_id is not None:
        return db.session.scalar(_UNREAD_STORE, {"store_id": store_id}) or 0
    if user.role == "manager":  # a manager without a store sees nothing (scope_to_user)
        return 0
    return db.session.scalar(_UNREAD_ALL) or 0


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
