"""The lowest spend among a tier's current members: the bar the customer page's "how far to the next reward"
measures a customer against.

``tiers.tier_floors`` asks ``min(monetary) WHERE tier = ? AND erased_at IS NULL`` for every tier. PostgreSQL
plans that as a walk up ``ix_customers_monetary`` from the lowest spend, filtering on the tier: since spend and
tier go together, reaching the first Platinum member reads nearly the whole index (0.4 s at 100k customers,
seconds at 1M). Asking for the first row in ``ix_customers_tier_floor``'s own order is one index seek on both
databases, and the page needs only the next tier up, not all four.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select

from portal.extensions import db
from portal.models import Customer
from portal.services.settings import TIERS

_FLOOR = (
    select(Customer.monetary)
    .where(Customer.tier == bindparam("tier"), Customer.erased_at.is_(None), Customer.monetary.isnot(None))
    .order_by(Customer.tier, Customer.erased_at, Customer.monetary)  # the index's order: a seek, then one row
    .limit(1)
)


def floor_of(tier: str) -> float | None:
    """The lowest spend among ``tier``'s current members (None: no member), by one index seek."""
    low = db.session.scalar(_FLOOR, {"tier": tier})
    return None if low is None else float(low)


def next_tier_floor(customer: Customer) -> dict[str, float] | None:
    """``{next tier: its lowest member's spend}`` for a tier holder below the top tier, ``{}`` when the next tier
    has no member, None for others (``tiers.progress_message(floors=...)`` needs no floor for them)."""
    if customer.tier not in TIERS[1:]:
        return None
    above = TIERS[TIERS.index(customer.tier) - 1]
    low = floor_of(above)
    return {} if low is None else {above: low}
