"""The campaign list's numbers: recipients, sent, redeemed, revenue and lift for a whole page at once.

A page of campaigns costs three queries whatever its length (stores, the outbox grouped by campaign,
the purchases of every campaign's window grouped by campaign and group), never one per campaign. The
numbers follow the campaign page's results (portal/services/campaigns/results.py): the window starts
at the first message and lasts ``sms.result_days``; revenue is the messaged group's net amount in it;
lift is the messaged group's purchase rate minus the control group's, in percentage points, shown only
when the results page would draw a conclusion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, case, func, or_, select

from portal.extensions import db
from portal.models import Campaign, OutboxMessage, PurchaseLine, Store
from portal.services import settings
from portal.services.campaigns.results import ACCEPTED, MIN_GROUP, MIN_OUTCOMES
from portal.services.clock import aware, zone


@dataclass
class CampaignNumbers:
    """One campaign's row on the list."""

    counts: dict[str, int] = field(default_factory=dict)  # outbox rows per status
    recipients: int = 0
    control: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    redeemed: int = 0
    first_send: datetime | None = None
    revenue: float | None = None  # the messaged group's net amount in the window; None before any send
    lift: float | None = None  # purchase-rate difference (messaged − control) in points, when conclusive
    lift_note: str = ""  # why no lift is shown ("not sent", "no control group", "too few customers", "too early")
    buyers: dict[str, int] = field(default_factory=dict)


def campaign_numbers(campaigns: list[Campaign], now: datetime | None = None) -> dict[int, CampaignNumbers]:
    """Numbers for each of ``campaigns`` (a page of the list), keyed by campaign id, computed from the tables.

    Pages read the stored copy (portal/services/summaries/campaigns.py), which keeps ``measured``'s
    values and finishes them with ``conclude``, as this does.
    """
    now = now or datetime.now(timezone.utc)
    out = measured(campaigns, now)
    for row in out.values():
        conclude(row)
    return out


def measured(campaigns: list[Campaign], now: datetime) -> dict[int, CampaignNumbers]:
    """The counted parts of each campaign's numbers (outbox counts, first send, revenue, buyers), cut at ``now``."""
    out = counted(campaigns)
    _purchases(out, now)
    return out


def counted(campaigns: list[Campaign]) -> dict[int, CampaignNumbers]:
    """The outbox parts alone (counts per status, redeemed, first send): one grouped query."""
    out = {c.id: CampaignNumbers() for c in campaigns}
    if not campaigns:
        return out
    ids = list(out)
    rows = db.session.execute(
        select(
            OutboxMessage.campaign_id,
            OutboxMessage.status,
            func.count(),
            func.count(OutboxMessage.redeemed_at),
            func.min(OutboxMessage.sent_at),
        )
        .where(OutboxMessage.campaign_id.in_(ids))
        .group_by(OutboxMessage.campaign_id, OutboxMessage.status)
    )
    for cid, status, n, redeemed, first in rows:
        row = out[cid]
        row.counts[status] = n
        row.redeemed += redeemed
        first = aware(first)
        if first is not None and (row.first_send is None or first < row.first_send):
            row.first_send = first
    return out


def conclude(row: CampaignNumbers) -> None:
    """Fill the derived figures (recipients, sent, delivered, failed) and the lift or its note from the counts."""
    row.control = row.counts.get("control", 0)
    row.recipients = sum(row.counts.values()) - row.control
    row.sent = sum(row.counts.get(s, 0) for s in ACCEPTED)
    row.delivered = row.counts.get("delivered", 0)
    row.failed = row.counts.get("failed", 0) + row.counts.get("undelivered", 0)
    if row.first_send is None:
        row.lift_note = "not sent"
        return
    n1, n0 = row.recipients, row.control
    b1, b0 = row.buyers.get("message", 0), row.buyers.get("control", 0)
    if n0 == 0:
        row.lift_note = "no control group"
    elif n1 < MIN_GROUP or n0 < MIN_GROUP:
        row.lift_note = "too few customers"
    elif min(b1, b0, n1 - b1, n0 - b0) < MIN_OUTCOMES:
        row.lift_note = "too early" if b1 + b0 == 0 or min(b1, b0) < MIN_OUTCOMES else "not enough data"
    else:
        row.lift = (b1 / n1 - b0 / n0) * 100


def _purchases(out: dict[int, CampaignNumbers], now: datetime) -> None:
    """Revenue and buyers per campaign and group in each campaign's window: one query for the page."""
    days = int(settings.get("sms.result_days"))
    stores = list(db.session.scalars(select(Store)))
    windows = []
    for cid, row in out.items():
        if row.first_send is None:
            continue
        upto = min(row.first_send + timedelta(days=days), now)
        for store in stores:  # purchase times are store-local wall times
            local = zone(store.timezone)
            windows.append(
                and_(
                    OutboxMessage.campaign_id == cid,
                    PurchaseLine.store_id == store.id,
                    PurchaseLine.purchased_at >= row.first_send.astimezone(local).replace(tzinfo=None),
                    PurchaseLine.purchased_at < upto.astimezone(local).replace(tzinfo=None),
                )
            )
        row.revenue = 0.0
    if not windows:
        return
    per_customer = (
        select(
            OutboxMessage.campaign_id.label("cid"),
            OutboxMessage.group.label("grp"),
            PurchaseLine.customer_id.label("customer"),
            func.sum(PurchaseLine.amount).label("amount"),
            func.max(case((PurchaseLine.amount > 0, 1), else_=0)).label("bought"),
        )
        .join(OutboxMessage, OutboxMessage.customer_id == PurchaseLine.customer_id)
        .where(OutboxMessage.campaign_id.in_([cid for cid, r in out.items() if r.first_send]), or_(*windows))
        .group_by(OutboxMessage.campaign_id, OutboxMessage.group, PurchaseLine.customer_id)
        .subquery()
    )
    totals = db.session.execute(
        select(
            per_customer.c.cid, per_customer.c.grp, func.sum(per_customer.c.amount), func.sum(per_customer.c.bought)
        ).group_by(per_customer.c.cid, per_customer.c.grp)
    )
    for cid, group, amount, buyers in totals:
        row = out[cid]
        row.buyers[group] = int(buyers or 0)
        if group == "message":
            row.revenue = float(amount or 0)
