"""Churn-risk views of the stored scores: band summary, revenue at risk and the at-risk list."""
from __future__ import annotations

from sqlalchemy import case, func, select

from portal import model_store
from portal.extensions import db
from portal.models import Customer
from portal.services import customers as customer_service
from portal.services import settings as settings_service

BANDS = settings_service.BANDS
CHURN_FILE = "churn_model.pkl"


def value_column():
    """What "customer value" means for ranking: predicted 12-month CLV when trained, else last 12 months' spend."""
    return func.coalesce(Customer.clv_12m, Customer.spend_12m, 0)


def priority():
    """Probability × value: who to save first (an SQL expression the at-risk list sorts by)."""
    return func.coalesce(Customer.churn_probability, 0) * value_column()


def band_summary(user, params=None) -> dict:
    """Per band: customers, revenue over the last 12 months and value at risk (probability × value)."""
    base = customer_service.filtered_customers(params or {}, user).where(Customer.churn_band.isnot(None)).subquery()
    value = func.coalesce(base.c.clv_12m, base.c.spend_12m, 0)
    rows = db.session.execute(
        select(base.c.churn_band, func.count(), func.coalesce(func.sum(base.c.spend_12m), 0),
               func.coalesce(func.sum(base.c.churn_probability * value), 0))
        .group_by(base.c.churn_band)).all()
    by_band = {r[0]: r for r in rows}
    values = settings_service.all_values()
    cards = [{"band": b, "customers": by_band[b][1] if b in by_band else 0,
              "revenue_12m": float(by_band[b][2]) if b in by_band else 0.0,
              "value_at_risk": float(by_band[b][3]) if b in by_band else 0.0,
              "action": values[f"churn.action.{b}"]} for b in BANDS]
    scored_at = db.session.scalar(select(func.max(base.c.scored_at)))
    return {"cards": cards, "scored_at": scored_at, "high": values["churn.high"], "low": values["churn.low"]}


def at_risk_query(params, user):
    """The at-risk list: scored customers matching the filters, most urgent (probability × value) first."""
    query = customer_service.filtered_customers(params, user).where(Customer.churn_probability.isnot(None))
    return query


def model_info() -> dict | None:
    """The churn model's manifest entry and load state for the page header, or None if untrained."""
    entry = model_store.entry(CHURN_FILE)
    if entry is None:
        return None
    state = model_store.status().get(CHURN_FILE, {}).get("state", "missing")
    return {**entry, "state": state}


def band_order():
    return case({b: i for i, b in enumerate(BANDS)}, value=Customer.churn_band, else_=len(BANDS))
