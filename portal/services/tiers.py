"""Tier summaries and the "how far to your next reward" messages (templates are settings)."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from portal import model_store
from portal.extensions import db
from portal.formatting import money
from portal.models import Customer
from portal.services import customers as customer_service
from portal.services import settings as settings_service

TIERS = settings_service.TIERS  # best first


def summary(user) -> dict:
    """Per tier: members, revenue share, average spend and reward, for the user's stores."""
    base = customer_service.filtered_customers({}, user).subquery()
    rows = db.session.execute(
        select(base.c.tier, func.count(), func.coalesce(func.sum(base.c.monetary), 0), func.avg(base.c.monetary),
               func.min(base.c.monetary))
        .group_by(base.c.tier)).all()
    values = settings_service.all_values()
    total_revenue = sum(float(r[2] or 0) for r in rows) or 1.0
    total_members = sum(r[1] for r in rows) or 1
    cards = []
    by_tier = {r[0]: r for r in rows}
    for tier in (*TIERS, None):
        r = by_tier.get(tier)
        members = r[1] if r else 0
        cards.append({
            "tier": tier, "members": members, "share_members": members / total_members,
            "revenue": float(r[2]) if r else 0.0, "share_revenue": (float(r[2]) / total_revenue) if r else 0.0,
            "avg_spend": float(r[3]) if r and r[3] is not None else None,
            "reward": values.get(f"reward.{tier}") if tier else None,
        })
    scored_at = db.session.scalar(select(func.max(base.c.scored_at)))
    return {"cards": cards, "scored_at": scored_at}


def tier_floors() -> dict[str, float]:
    """The lowest current member's spend per tier (the bar to match for the next tier up)."""
    rows = db.session.execute(select(Customer.tier, func.min(Customer.monetary))
                              .where(Customer.tier.isnot(None), Customer.erased_at.is_(None))
                              .group_by(Customer.tier)).all()
    return {tier: float(low) for tier, low in rows if low is not None}


def progress_message(customer: Customer, values: dict | None = None, floors: dict | None = None) -> str | None:
    """What this customer still needs for the next reward, in the admin's words; None if unscored."""
    if customer.scored_at is None or customer.frequency is None:
        return None
    values = values or settings_service.all_values()
    store = customer.store
    if customer.tier is None:
        if model_store.entry("CS_model.pkl") is None:
            return None
        purchases = max(int(values["tier.min_frequency"]) - int(customer.frequency), 0)
        spend = max(Decimal(str(values["tier.min_monetary"])) - Decimal(customer.monetary or 0), Decimal(0))
        return values["tier.message.progress"].format(
            purchases=purchases, spend=money(spend, store), next_tier="Bronze", reward=values["reward.Bronze"])
    index = TIERS.index(customer.tier) if customer.tier in TIERS else 0
    if index == 0:
        return values["tier.message.top"].format(reward=values[f"reward.{customer.tier}"])
    next_tier = TIERS[index - 1]
    floors = floors if floors is not None else tier_floors()
    gap = max(Decimal(str(floors.get(next_tier, 0))) - Decimal(customer.monetary or 0), Decimal(0))
    return values["tier.message.next"].format(spend=money(gap, store), next_tier=next_tier,
                                              reward=values[f"reward.{next_tier}"])
