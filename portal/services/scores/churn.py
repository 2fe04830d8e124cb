"""Churn-risk views of the stored scores: band summary, revenue at risk and the at-risk list."""

from __future__ import annotations

import math
from collections import defaultdict

from sqlalchemy import func, select

from portal import model_store
from portal.extensions import db
from portal.models import Customer
from portal.services import settings as settings_service
from portal.services.customers import customers as customer_service
from portal.services.summaries import customers as customer_summaries

BANDS = settings_service.BANDS


def priority():
    """Probability × value: who to save first. Stored by scoring (``churn_priority``, indexed with the id
    for keyset pages); set for every customer with a churn probability, which the at-risk list requires."""
    return Customer.churn_priority


def band_summary(user, params=None) -> dict:
    """Per band: customers, revenue over the last 12 months and value at risk (probability × value).

    Lost customers are left out unless ``params`` include them (``include_lost=1``): their value is
    already gone, not at risk. With the filters the stored customer summaries have (store, tier, band,
    lifecycle, include_lost) the cards add up those stored rows (``as_of``: when they were computed);
    any other filter (search, recency, consent, ...) keeps the live query below, ``as_of`` None.
    """
    params = params or {}
    stored = customer_summaries.for_user(user, params)
    if stored is not None:
        groups, as_of = stored
        lost = customer_service.includes_lost(params)
        groups = [g for g in groups if g["churn_band"] is not None and (lost or g["lifecycle"] != "Lost")]
        rows = [(g["churn_band"], g["n"], g["sum_spend_12m"], g["sum_value_at_risk"]) for g in groups]
        return _band_cards(rows, customer_summaries.latest_score(groups), params, as_of)
    return _live_band_summary(user, params)


def _live_band_summary(user, params) -> dict:
    """``band_summary`` from the customers, for filters the stored summaries cannot answer.

    One pass grouped by (store, tier, band) over the filtered customers (a search narrows them through
    its own index first); the groups are added up here.
    """
    query = customer_service.filtered_customers(params, user).where(Customer.churn_band.isnot(None))
    base = customer_service.savable(query, params).subquery()
    value = func.coalesce(base.c.clv_12m, base.c.spend_12m, 0)
    rows = db.session.execute(
        select(
            base.c.churn_band,
            func.count(),
            func.sum(base.c.spend_12m),
            func.sum(base.c.churn_probability * value),
            func.max(base.c.scored_at),
        ).group_by(base.c.store_id, base.c.tier, base.c.churn_band)
    ).all()
    scored = [r[4] for r in rows if r[4] is not None]
    return _band_cards([r[:4] for r in rows], max(scored) if scored else None, params, None)


def _band_cards(rows, scored_at, params, as_of) -> dict:
    """The band cards from (band, customers, 12-month spend, value at risk) parts."""
    counts: dict = defaultdict(int)
    revenue: dict = defaultdict(list)
    at_risk: dict = defaultdict(list)
    for band, n, spend, risk in rows:
        counts[band] += n
        revenue[band].append(float(spend or 0))
        at_risk[band].append(float(risk or 0))
    values = settings_service.all_values()
    cards = [
        {
            "band": b,
            "customers": counts.get(b, 0),
            "revenue_12m": round(math.fsum(revenue.get(b, ())), 2),  # money: cents
            "value_at_risk": math.fsum(at_risk.get(b, ())),
            "action": values[f"churn.action.{b}"],
        }
        for b in BANDS
    ]
    return {
        "cards": cards,
        "scored_at": scored_at,
        "as_of": as_of,
        "high": values["churn.high"],
        "low": values["churn.low"],
        "include_lost": customer_service.includes_lost(params),
    }


def at_risk_query(params, user):
    """The at-risk list: scored customers matching the filters, most urgent (probability × value) first.

    Lost customers only with ``include_lost=1`` (see ``customers.savable``)."""
    query = customer_service.filtered_customers(params, user).where(Customer.churn_probability.isnot(None))
    return customer_service.savable(query, params)


def model_info() -> dict | None:
    """The churn model's manifest entry and load state for the page header, or None if untrained."""
    entry = model_store.entry(model_store.CHURN_FILE)
    if entry is None:
        return None
    state = model_store.status().get(model_store.CHURN_FILE, {}).get("state", "missing")
    return {**entry, "state": state}
