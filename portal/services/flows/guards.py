"""The monthly SMS budget per store: segments sent (or queued) this month × the price per segment.

Dry-run sends count like real ones (a rehearsal must behave like the real thing). When a store's
automations stop for the budget, an audit line ``flows.budget_reached`` records it; admins see it on
the dashboard (and every page's banner) for the rest of that month.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import and_, bindparam, func, or_, select

from portal.extensions import db
from portal.models import AuditEntry, Campaign, OutboxMessage, Store
from portal.services import settings
from portal.services.clock import zone
from portal.sms_text import segment_info

#: Rows that cost (or will cost) money: accepted by Twilio or the dry-run gateway, or still on their way.
_PLAIN = re.compile(r"[A-Za-z0-9 .,:;!?'\"()+\-/@#%&*=<>$]*")  # single-septet GSM-7: segments follow length

COSTING = ("sent", "delivered", "undelivered", "dry-run", "unknown")
ON_THE_WAY = ("pending", "claimed", "sending", "in_doubt", "checking")


def month_start(store: Store, now: datetime) -> datetime:
    """The first moment of the store-local month of ``now``, in UTC."""
    tz = zone(store.timezone)
    local = now.astimezone(tz)
    return datetime.combine(date(local.year, local.month, 1), time(0), tzinfo=tz).astimezone(timezone.utc)


def segments_of(body: str | None) -> int:
    return segment_info(body).segments if body else 0


class SegmentCounter:
    """segments_of with a cache: bodies of single-septet GSM-7 characters need segments by length alone."""

    def __init__(self):
        self.by_length: dict[int, int] = {}

    def __call__(self, body: str | None) -> int:
        if not body:
            return 0
        if not _PLAIN.fullmatch(body):
            return segments_of(body)
        n = self.by_length.get(len(body))
        if n is None:
            n = self.by_length[len(body)] = segments_of(body)
        return n


@dataclass
class Budget:
    """A store's SMS budget this month (amounts in the store's currency)."""

    budget: float  # 0: no budget
    spent: float  # sent and queued segments × price
    price: float  # per segment

    @property
    def limited(self) -> bool:
        return self.budget > 0

    @property
    def remaining(self) -> float | None:
        return max(self.budget - self.spent, 0.0) if self.limited else None

    def affords(self, cost: float) -> bool:
        return not self.limited or self.spent + cost <= self.budget + 1e-9


def budget_for(store: Store, now: datetime) -> Budget:
    """What the store spent on SMS this month (campaigns and automations) against its monthly budget."""
    start = month_start(store, now)
    bodies = db.session.scalars(
        select(OutboxMessage.body)
        .join(Campaign, Campaign.id == OutboxMessage.campaign_id)
        .where(
            Campaign.store_id == store.id,
            OutboxMessage.group == "message",
            or_(
                and_(OutboxMessage.status.in_(COSTING), OutboxMessage.sent_at >= start),
                OutboxMessage.status.in_(ON_THE_WAY),
            ),
        )
    )
    count = SegmentCounter()
    segments = sum(count(body) for body in bodies)
    price = float(settings.get("sms.price_per_segment"))
    return Budget(budget=float(settings.get("sms.monthly_budget")), spent=segments * price, price=price)


def stops_since(now: datetime) -> datetime:
    """A time before the start of the month of ``now`` in every time zone: budget stops after it may count."""
    return now.astimezone(timezone.utc) - timedelta(days=32)


# Built once (the banner asks on every page): the latest budget stop per store since :since.
_BUDGET_STOPS = (
    select(AuditEntry.target, func.max(AuditEntry.at))
    .where(AuditEntry.action == "flows.budget_reached", AuditEntry.at >= bindparam("since", type_=AuditEntry.at.type))
    .group_by(AuditEntry.target)
)


def paused_stores(now: datetime, store_ids: list[int] | None = None) -> list[dict]:
    """Stores whose automations stopped for the budget this month: [{store, at, budget}] (the dashboard banner).

    Every page's banner asks this, so it is one query on the audit log's ``at`` index (the latest stop per
    store since the earliest month start any time zone can have), then each store's own month start.
    """
    latest = dict(db.session.execute(_BUDGET_STOPS, {"since": stops_since(now)}).all())
    if not latest:
        return []
    out = []
    for store in db.session.scalars(select(Store).order_by(Store.name)):
        if store_ids is not None and store.id not in store_ids:
            continue
        at = latest.get(f"store:{store.id}")
        if at is not None and _aware(at) >= month_start(store, now):
            out.append({"store": store, "at": at, "budget": float(settings.get("sms.monthly_budget"))})
    return out


def _aware(value: datetime) -> datetime:
    """A stored UTC time as an aware datetime (SQLite gives it back naive)."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
