"""One customer's story, newest first: baskets, messages and their status, coupons, replies, consent, tiers.

Each source is read with one query bounded by ``LIMIT`` through an index on the customer (or their phone),
so the page costs the same for a customer with 10 lines or 10,000: the newest ``limit`` + 1 events of each
source are enough to know the newest ``limit`` of them all, and whether there are more.

Times: purchase lines hold the store's wall time as imported (naive); everything else is UTC. Events keep
the value the ``datetime`` filter shows (wall time for a basket, UTC otherwise) and sort on UTC, the
baskets' wall time read in the store's time zone.

Every page view runs these queries, so each statement is built once (module level, values bound per call:
``:customer_id``, ``:n``): building and hashing a statement costs more than running it on an index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select

from portal.extensions import db
from portal.models import (
    Campaign,
    ConsentEvent,
    Customer,
    OutboxMessage,
    Product,
    PurchaseLine,
    SmsEvent,
    TierChange,
)

DEFAULT_LIMIT = 30
MAX_LIMIT = 480
PRODUCTS_SHOWN = 5  # product names listed per basket (the basket's line count says how many there are)

# Outbox statuses in words (a dry-run is the real thing rehearsed: it shows like a sent message, labelled).
MESSAGE_STATUS = {
    "pending": "queued",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "not delivered",
    "failed": "failed",
    "skipped": "skipped",
    "cancelled": "cancelled",
    "unknown": "status unknown",
    "dry-run": "dry run (not sent)",
}


@dataclass
class Event:
    """One line of the timeline. ``kind``: purchase | message | control | redemption | reply | consent | tier."""

    kind: str
    at: datetime  # what the page shows (naive = store wall time, aware = UTC)
    sort_at: datetime  # UTC, for ordering
    title: str
    detail: str = ""
    status: str | None = None
    amount: Decimal | None = None
    items: list[str] = field(default_factory=list)
    code: str | None = None
    lines: int | None = None  # a basket's line count (``items`` names the first few)


@dataclass
class Timeline:
    events: list[Event]
    has_more: bool
    limit: int


def clamp_limit(raw) -> int:
    """The number of events to show from a ``?timeline=`` value: 30 by default, at most 480, never an error."""
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return DEFAULT_LIMIT
    return max(DEFAULT_LIMIT, min(value, MAX_LIMIT))


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _store_zone(customer: Customer) -> ZoneInfo:
    try:
        return ZoneInfo(customer.store.timezone) if customer.store and customer.store.timezone else ZoneInfo("UTC")
    except Exception:  # an unknown zone name in an old row: UTC rather than a 500
        return ZoneInfo("UTC")


def build(customer: Customer, limit: int = DEFAULT_LIMIT) -> Timeline:
    """The newest ``limit`` events of ``customer`` across every source, newest first (see the module doc)."""
    limit = clamp_limit(limit)
    events: list[Event] = []
    for source in (_baskets, _outbox, _replies, _consent, _tiers):
        events += source(customer, limit + 1)
    events.sort(key=lambda e: e.sort_at, reverse=True)
    return Timeline(events=events[:limit], has_more=len(events) > limit, limit=limit)


_CUSTOMER = bindparam("customer_id")
_N = bindparam("n")

_LATEST_BASKETS = (
    select(
        PurchaseLine.transaction_ref,
        func.max(PurchaseLine.purchased_at).label("at"),
        func.count().label("lines"),
        func.sum(PurchaseLine.amount).label("total"),
        func.max(PurchaseLine.coupon_code).label("coupon"),
    )
    .where(PurchaseLine.customer_id == _CUSTOMER)
    .group_by(PurchaseLine.transaction_ref)
    .order_by(func.max(PurchaseLine.purchased_at).desc(), PurchaseLine.transaction_ref.desc())
    .limit(_N)
)
_BASKET_LINES = (
    select(PurchaseLine.transaction_ref, Product.name, PurchaseLine.quantity)
    .join(Product, PurchaseLine.product_id == Product.id)
    .where(PurchaseLine.customer_id == _CUSTOMER, PurchaseLine.transaction_ref.in_(bindparam("refs", expanding=True)))
    .order_by(PurchaseLine.transaction_ref, PurchaseLine.id)
    .limit(_N)
)


def _baskets(customer: Customer, n: int) -> list[Event]:
    """Purchases grouped per invoice/basket (transaction_ref): when, how many lines, total, products, coupon."""
    baskets = db.session.execute(_LATEST_BASKETS, {"customer_id": customer.id, "n": n}).all()
    if not baskets:
        return []
    refs = [b.transaction_ref for b in baskets]
    names: dict[str, list[str]] = {}
    lines = db.session.execute(
        # bounded even for a basket of thousands of lines
        _BASKET_LINES,
        {"customer_id": customer.id, "refs": refs, "n": n * PRODUCTS_SHOWN * 4},
    ).all()
    for ref, name, quantity in lines:
        shown = names.setdefault(ref, [])
        if len(shown) < PRODUCTS_SHOWN:
            label = name or "?"
            if quantity is not None and quantity < 0:
                label += " (returned)"
            shown.append(label)
    zone = _store_zone(customer)
    events = []
    for b in baskets:
        total = b.total
        returned = total is not None and total < 0
        events.append(
            Event(
                kind="purchase",
                at=b.at,
                sort_at=b.at.replace(tzinfo=zone).astimezone(timezone.utc),
                title="Return" if returned else "Purchase",
                detail=f"basket {b.transaction_ref}",
                amount=total,
                items=names.get(b.transaction_ref, []),
                code=b.coupon,
                lines=b.lines,
            )
        )
    return events


def _message_time(row: OutboxMessage, campaign: Campaign) -> datetime:
    return _utc(row.sent_at or row.claimed_at or campaign.started_at or campaign.created_at)


_MESSAGES = (
    select(OutboxMessage, Campaign)
    .join(Campaign, OutboxMessage.campaign_id == Campaign.id)
    .where(OutboxMessage.customer_id == _CUSTOMER)
    .order_by(OutboxMessage.id.desc())
    .limit(_N)
)
_REDEMPTIONS = (
    select(OutboxMessage.coupon_code, OutboxMessage.redeemed_at, OutboxMessage.redeemed_by, Campaign.name)
    .join(Campaign, OutboxMessage.campaign_id == Campaign.id)
    .where(OutboxMessage.customer_id == _CUSTOMER, OutboxMessage.redeemed_at.isnot(None))
    .order_by(OutboxMessage.redeemed_at.desc())
    .limit(_N)
)


def _outbox(customer: Customer, n: int) -> list[Event]:
    """Campaign messages and control-group holds, and coupons redeemed, from the customer's outbox rows.

    The newest ``n`` rows give the messages; when the customer has fewer than ``n`` rows they are all of
    them, so the redemptions come from the same rows (one query instead of two, the usual case).
    """
    rows = db.session.execute(_MESSAGES, {"customer_id": customer.id, "n": n}).all()
    events = _messages(rows)
    if len(rows) < n:
        redeemed = sorted((r for r, _ in rows if r.redeemed_at is not None), key=lambda r: _utc(r.redeemed_at))
        by_campaign = {r.id: c.name for r, c in rows}
        found = [(r.coupon_code, r.redeemed_at, r.redeemed_by, by_campaign[r.id]) for r in reversed(redeemed)]
    else:
        found = db.session.execute(_REDEMPTIONS, {"customer_id": customer.id, "n": n}).all()
    return events + _redemptions(found[:n])


def _messages(rows) -> list[Event]:
    """Campaign messages (dry runs included) with their status, and control-group holds."""
    events = []
    for row, campaign in rows:
        at = _message_time(row, campaign)
        if row.group == "control":
            events.append(
                Event(
                    kind="control",
                    at=at,
                    sort_at=at,
                    title=f"Held back from “{campaign.name}”",
                    detail="in the campaign's control group: no message, so the campaign's effect can be measured",
                )
            )
            continue
        status = MESSAGE_STATUS.get(row.status, row.status)
        if row.error_code:
            status += f" (error {row.error_code})"
        events.append(
            Event(
                kind="message",
                at=at,
                sort_at=at,
                title=f"SMS from “{campaign.name}”",
                detail=row.body or "",
                status=status,
                code=row.coupon_code,
            )
        )
    return events


def _redemptions(rows) -> list[Event]:
    """Coupons redeemed (at the till by staff, or matched from an import): (code, at, by, campaign name) rows."""
    events = []
    for code, at, by, name in rows:
        how = "at the till" if (by or "").startswith("staff:") else "with a purchase"
        events.append(
            Event(
                kind="redemption",
                at=_utc(at),
                sort_at=_utc(at),
                title="Coupon redeemed",
                detail=f"from “{name}”, {how}",
                code=code,
            )
        )
    return events


_REPLIES = (
    select(SmsEvent)
    .where(SmsEvent.from_phone == bindparam("phone"), SmsEvent.kind == "inbound")
    .order_by(SmsEvent.received_at.desc())
    .limit(_N)
)


def _replies(customer: Customer, n: int) -> list[Event]:
    """Inbound SMS from the customer's phone (STOP, HELP or any text)."""
    if not customer.phone:
        return []
    rows = db.session.scalars(_REPLIES, {"phone": customer.phone, "n": n}).all()
    events = []
    for e in rows:
        body = str((e.payload or {}).get("Body") or "").strip()
        events.append(
            Event(
                kind="reply",
                at=_utc(e.received_at),
                sort_at=_utc(e.received_at),
                title="Reply received",
                detail=body[:320],
                status=e.keyword,
            )
        )
    return events


_CONSENT = (
    select(ConsentEvent)
    .where(ConsentEvent.customer_id == _CUSTOMER)
    .order_by(ConsentEvent.effective_at.desc(), ConsentEvent.id.desc())
    .limit(_N)
)


def _consent(customer: Customer, n: int) -> list[Event]:
    rows = db.session.scalars(_CONSENT, {"customer_id": customer.id, "n": n}).all()
    events = []
    for e in rows:
        who = f" by {e.user_email}" if e.user_email and e.user_email != "sms-reply" else ""
        keyword = f" ({e.keyword})" if e.keyword else ""
        events.append(
            Event(
                kind="consent",
                at=_utc(e.effective_at),
                sort_at=_utc(e.effective_at),
                title="SMS consent: " + ("opted in" if e.status == "opted_in" else "opted out"),
                detail=f"{e.source}{keyword}{who}",
            )
        )
    return events


_TIERS = select(TierChange).where(TierChange.customer_id == _CUSTOMER).order_by(TierChange.id.desc()).limit(_N)


def _tiers(customer: Customer, n: int) -> list[Event]:
    rows = db.session.scalars(_TIERS, {"customer_id": customer.id, "n": n}).all()
    return [
        Event(
            kind="tier",
            at=_utc(t.at),
            sort_at=_utc(t.at),
            title=f"Tier: {t.old_tier or 'no tier'} → {t.new_tier or 'no tier'}",
            detail=t.reason,
        )
        for t in rows
    ]
