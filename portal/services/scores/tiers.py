"""Tier summaries and the "how far to your next reward" messages (templates are settings)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from portal import model_store
from portal.extensions import db
from portal.formatting import money
from portal.models import Customer, ModelRecord
from portal.services import settings as settings_service
from portal.services.scores import scoring
from portal.services.summaries import customers as customer_summaries

TIERS = settings_service.TIERS  # best first


def summary(user, store: str | None = None) -> dict:
    """Per tier: members, revenue share, average spend and reward, for the user's stores (or the one of them
    named by ``store``, the list filter: it narrows within the user's scope, never beyond).

    Read from the stored customer summaries (``summaries.customers``, kept per store when the data
    changes), never by grouping the customers per request; ``as_of`` says when they were computed.
    Spend is money (cents), so the sums are rounded to cents.
    """
    groups, as_of = customer_summaries.for_user(user, {"store": store} if store else {})
    members: dict = defaultdict(int)
    spend: dict = defaultdict(list)
    priced: dict = defaultdict(int)
    for group in groups:
        members[group["tier"]] += group["n"]
        priced[group["tier"]] += group["n_monetary"]
        spend[group["tier"]].append(group["sum_monetary"])
    return {**_cards(members, spend, priced), "scored_at": customer_summaries.latest_score(groups), "as_of": as_of}


def _cards(members: dict, spend: dict, priced: dict) -> dict:
    """The tier cards from members, spend parts and priced members per tier."""
    revenue = {tier: round(math.fsum(parts), 2) for tier, parts in spend.items()}
    values = settings_service.all_values()
    total_revenue = sum(revenue.values()) or 1.0
    total_members = sum(members.values()) or 1
    cards = []
    for tier in (*TIERS, None):
        count = members.get(tier, 0)
        cards.append(
            {
                "tier": tier,
                "members": count,
                "share_members": count / total_members,
                "revenue": revenue.get(tier, 0.0),
                "share_revenue": revenue.get(tier, 0.0) / total_revenue,
                "avg_spend": revenue.get(tier, 0.0) / priced[tier] if priced.get(tier) else None,
                "reward": values.get(f"reward.{tier}") if tier else None,
            }
        )
    return {"cards": cards}


def tier_floors() -> dict[str, float]:
    """The lowest current member's spend per tier (the bar to match for the next tier up).

    One query per tier, each a seek on ``ix_customers_tier_floor`` in that index's own order
    (``customers.floors``: ``min(monetary)`` alone was planned on PostgreSQL as a walk up the spend
    index, seconds at 1M customers).
    """
    from portal.services.customers.floors import floor_of  # the seek the customer page uses

    floors = {tier: floor_of(tier) for tier in TIERS}
    return {tier: low for tier, low in floors.items() if low is not None}


def progress_message(customer: Customer, values: dict | None = None, floors: dict | None = None) -> str | None:
    """What this customer still needs for the next reward, in the admin's words; None if unscored."""
    if customer.scored_at is None or customer.frequency is None:
        return None
    values = values or settings_service.all_values()
    store = customer.store
    if customer.tier is None:
        if model_store.entry(model_store.SEGMENTATION_FILE) is None:
            return None
        min_frequency, min_monetary = scoring.current_bar(values)
        purchases = max(int(min_frequency) - int(customer.frequency), 0)
        spend = max(Decimal(str(min_monetary)) - Decimal(customer.monetary or 0), Decimal(0))
        if not purchases or not spend:  # above the bar: the tier went at its review, not for lack of spend
            return (
                f"Has bought enough for a tier, but not in the last {values['tiers.retention_months']} months: "
                "the next purchase brings a tier back."
            )
        return values["tier.message.progress"].format(
            purchases=purchases, spend=money(spend, store), next_tier="Bronze", reward=values["reward.Bronze"]
        )
    index = TIERS.index(customer.tier) if customer.tier in TIERS else 0
    keep = _kept_until(customer, values)
    if index == 0:
        return values["tier.message.top"].format(reward=values[f"reward.{customer.tier}"]) + keep
    next_tier = TIERS[index - 1]
    floors = floors if floors is not None else tier_floors()
    gap = max(Decimal(str(floors.get(next_tier, 0))) - Decimal(customer.monetary or 0), Decimal(0))
    return (
        values["tier.message.next"].format(
            spend=money(gap, store), next_tier=next_tier, reward=values[f"reward.{next_tier}"]
        )
        + keep
    )


def _kept_until(customer: Customer, values: dict) -> str:
    """For a tier holder who has gone quiet: until when the tier is kept without a purchase ("" otherwise)."""
    if customer.lifecycle in (None, "New", "Active") or customer.last_purchase_at is None:
        return ""
    until = customer.last_purchase_at + timedelta(days=scoring.retention_days(values))
    return f" {customer.tier} is kept until {until:%Y-%m-%d} without a purchase, then reviewed."


def bar_rule(values: dict | None = None) -> dict:
    """The eligibility bar in force and the rule behind it, for the tiers and help pages."""
    values = values or settings_service.all_values()
    min_frequency, min_monetary = scoring.current_bar(values)
    return {
        "mode": values["tiers.bar"],
        "share": values["tiers.share"],
        "min_frequency": int(min_frequency),
        "min_monetary": min_monetary,
        "retention_months": values["tiers.retention_months"],
    }


def latest_moves() -> dict | None:
    """How customers moved between tiers at the last training (kept in the active model's record)."""
    record = db.session.scalar(
        select(ModelRecord).where(ModelRecord.name == "segmentation", ModelRecord.active.is_(True))
    )
    return (record.manifest or {}).get("moves") if record else None
