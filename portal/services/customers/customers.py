"""Customer queries and consent: the one place list filters and store scoping are applied."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from sqlalchemy import or_, select

from portal.extensions import db
from portal.models import ConsentEvent, Customer, Store
from portal.params import parse_id
from portal.security import scope_to_user, user_store_id
from portal.services import audit, webhooks_out
from portal.services.customers import search
from portal.services.summaries import customers as customer_summaries

SORTS = {
    "name": Customer.name,
    "monetary": Customer.monetary,
    "frequency": Customer.frequency,
    "recency": Customer.recency,
    "churn_probability": Customer.churn_probability,
    "clv_12m": Customer.clv_12m,
    "last_purchase_at": Customer.last_purchase_at,
}
FILTER_KEYS = (
    "q",
    "store",
    "tier",
    "band",
    "lifecycle",
    "consent",
    "min_recency",
    "max_recency",
    "days_since_sms",
    "include_lost",
    "customer",  # exactly one customer, by their external id (the "Send an offer" links)
)
CONSENT_MOVED = "loyalist.consent_moved_stores"  # session.info key: stores whose opted-out count changed
LIFECYCLES = ("New", "Active", "At risk", "Lapsing", "Lost")  # preprocessing.lifecycle.STATUSES, in this order
LIFECYCLE_MEANING = {
    "New": "First purchase in the last 90 days: a welcome, not a win-back.",
    "Active": "Buying at their usual rhythm.",
    "At risk": "Quieter than their usual rhythm, or a High churn risk: a nudge.",
    "Lapsing": "Clearly overdue (past twice their usual gap and 180 days) but not gone: a win-back offer.",
    "Lost": "Idle for over a year (and three usual gaps) and unlikely to come back: left out of retention lists "
    "and campaigns unless included on purpose.",
}


class ConsentError(ValueError):
    """A consent change that cannot be recorded; the message is for the user."""


def filtered_customers(params: Mapping[str, str], user=None, include_erased: bool = False):
    """A ``select(Customer)`` for the list filters in ``params``, scoped to ``user``'s store.

    Args:
        params: the query-string filters (q, store, tier, band, lifecycle, consent, min_recency,
            max_recency, days_since_sms); unknown keys are ignored. ``q`` matches the start of the id, name,
            e-mail or phone, in any case (``search.condition``). ``store`` (name or id) narrows within the
            user's scope, never beyond it. ``tier=none`` selects customers
            without a tier. ``include_lost`` is read by :func:`savable`, not here.
        user: the logged-in user (None: the CLI, all stores).
    """
    query = select(Customer)
    if not include_erased:
        query = query.where(Customer.erased_at.is_(None))
    if user is not None:
        query = scope_to_user(query, Customer.store_id, user)
    q = (params.get("q") or "").strip()
    if q:  # prefixes of id, name, e-mail or phone, case-insensitive, from indexes (search.py)
        query = query.where(search.condition(q))
    one = (params.get("customer") or "").strip()
    if one:
        query = query.where(Customer.external_id == one)
    store = (params.get("store") or "").strip()
    if store:
        query = query.join(Store, Customer.store_id == Store.id).where(
            or_(Store.name == store, Store.id == (parse_id(store) if parse_id(store) is not None else -1))
        )
    tier = (params.get("tier") or "").strip()
    if tier:
        query = query.where(Customer.tier.is_(None) if tier.lower() == "none" else Customer.tier == tier)
    band = (params.get("band") or "").strip()
    if band:
        query = query.where(Customer.churn_band == band)
    status = (params.get("lifecycle") or "").strip()
    if status:
        query = query.where(Customer.lifecycle == status)
    consent = (params.get("consent") or "").strip()
    if consent:
        query = query.where(Customer.sms_consent == consent)
    for key, op in (("min_recency", "ge"), ("max_recency", "le")):
        days = parse_id(params.get(key))
        if days is not None:
            col = Customer.recency
            query = query.where(col >= days if op == "ge" else col <= days)
    sms_days = parse_id(params.get("days_since_sms"))
    if sms_days is not None:
        cutoff = datetime.now(timezone.utc) - timedelta(days=min(sms_days, 36500))
        query = query.where(or_(Customer.last_sms_at.is_(None), Customer.last_sms_at <= cutoff))
    return query


def includes_lost(params: Mapping[str, str]) -> bool:
    """Whether a retention list or audience keeps Lost customers: ``include_lost=1``, or asking for them by name."""
    return (params.get("include_lost") or "").strip().lower() in {"1", "true", "yes", "on", "y"} or (
        (params.get("lifecycle") or "").strip() == "Lost"
    )


def savable(query, params: Mapping[str, str]):
    """``query`` without Lost customers unless ``params`` include them (the at-risk list, value at risk, campaigns).

    Lost (long gone, P(alive) low) is not the same as High churn risk: an offer to someone gone for two
    years is money spent on nobody. Unscored customers (no lifecycle yet) stay in.
    """
    if includes_lost(params):
        return query
    return query.where(or_(Customer.lifecycle.is_(None), Customer.lifecycle != "Lost"))


def get_for_user(customer_id: int, user) -> Customer | None:
    """A customer the user may see, or None (a manager of another store gets None, i.e. 404)."""
    query = scope_to_user(select(Customer).where(Customer.id == customer_id), Customer.store_id, user)
    return db.session.scalar(query)


def set_consent(
    customer: Customer,
    status: str,
    source: str,
    effective_at: datetime | None = None,
    user_email: str | None = None,
    keyword: str | None = None,
    detail: str | None = None,
) -> None:
    """Record an SMS consent change with its legal trail, in the caller's transaction (``record_consent`` commits).

    An opt-in needs a date and a source; an opt-out always wins and is recorded as given.
    """
    if status not in {"opted_in", "opted_out"}:
        raise ConsentError("Consent must be opted_in or opted_out.")
    effective_at = effective_at or datetime.now(timezone.utc)
    if effective_at.tzinfo is None:
        effective_at = effective_at.replace(tzinfo=timezone.utc)
    if status == "opted_in" and not source:
        raise ConsentError("An opt-in needs its source (e.g. signed form at the till).")
    before = customer.sms_consent
    if (before == "opted_out") != (status == "opted_out"):  # the store's stored "opted out" count moves
        db.session.info.setdefault(CONSENT_MOVED, set()).add(customer.store_id)
    customer.sms_consent = status
    customer.sms_consent_at = effective_at
    customer.sms_consent_source = source
    customer.sms_consent_by = user_email
    db.session.add(
        ConsentEvent(
            customer_id=customer.id,
            status=status,
            source=source,
            keyword=keyword,
            effective_at=effective_at,
            user_email=user_email,
            detail=detail,
        )
    )
    audit.record(
        "customer.consent", customer.external_id, {"before": before, "after": status, "source": source}, user_email
    )


def consent_committed() -> None:
    """Call after committing ``set_consent`` changes: the stores whose customers moved into or out of "opted out"
    get their stored summary refreshed (its ``n_opted_out``: the export panel's "can be exported"), by a
    coalesced background job. Never raises."""
    stores = db.session.info.pop(CONSENT_MOVED, None)
    if stores:
        customer_summaries.changed(stores)


def record_consent(
    customer: Customer, status: str, source: str, effective_at: datetime | None = None, user_email: str | None = None
) -> None:
    """Staff record a customer's SMS consent (``set_consent``, then commit); ConsentError when refused."""
    before = customer.sms_consent
    set_consent(customer, status, source, effective_at, user_email)
    db.session.commit()
    consent_committed()
    if status == "opted_out" and before != "opted_out":
        announce_opt_outs([customer], "staff")
        from portal.services.summaries import campaigns as campaign_summaries  # here: it imports this module

        campaign_summaries.changed(customer_ids=[customer.id])  # "opted out since" on their campaigns


def announce_opt_outs(customers: list[Customer], source: str) -> None:
    """The outgoing webhook ``customer.opted_out`` for customers whose opt-out was just committed.

    ``source`` says where it came from: "staff" (the customer page), "sms_reply" (STOP), "twilio"
    (error 21610), "api". Never raises (the opt-out itself is committed). Also ``consent_committed``.
    """
    consent_committed()
    webhooks_out.notify(
        [
            ("customer.opted_out", {"customer_id": c.id, "external_id": c.external_id, "source": source})
            for c in customers
        ]
    )


def store_choices(user) -> list[Store]:
    """The stores a user can pick in a list's store filter: every store for users who see several (admins and
    marketers without a store), none for store users (their scope is one store; ``?store=`` never widens it)."""
    if user is None or user_store_id(user) is not None or user.role == "manager":
        return []
    return list(db.session.scalars(select(Store).order_by(Store.name)))


OFFER_WHEN_AT_RISK = ("At risk", "Lapsing")


def offer_purpose(customer: Customer, progress: str | None = None) -> str | None:
    """The campaign purpose of a "Send an offer" for this customer, or None when none may be sent.

    None for opted-out or erased customers and those without a phone. ``win_back`` for customers at risk
    (lifecycle At risk / Lapsing / Lost, or a High or Medium churn band), ``tier_up`` for others who are
    on their way to a (next) tier (``progress``: the page's "how far to your next reward" message).
    """
    if customer.sms_consent == "opted_out" or customer.erased_at is not None or not customer.phone:
        return None
    at_risk = customer.lifecycle in (*OFFER_WHEN_AT_RISK, "Lost") or customer.churn_band in ("High", "Medium")
    if not at_risk and progress:
        return "tier_up"
    return "win_back"
