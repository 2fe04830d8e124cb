"""The ``mail.digest`` job: each user's week, once per ISO week, on the weekday and hour they chose.

When: in the time zone of the user's store (store-less users: the first store's, else UTC), from the
chosen hour for 24 hours (a server that was down at that hour catches up; later it waits for next
week). What: the week before that moment against the week before it, for the user's store (admins and
store-less marketers: every store): customers who bought, revenue and repeat rate; tier moves and band
moves; value at risk; running campaigns (and automations, where that table exists); dead stock sold.
The period key is the ISO week, unique per user: a job run twice sends once.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from flask import url_for
from sqlalchemy import Float, and_, case, cast, distinct, exists, func, or_, select
from sqlalchemy.orm import aliased

from portal import jobs, models
from portal.extensions import db
from portal.formatting import money
from portal.models import (
    Campaign,
    Customer,
    MailEvent,
    OutboxMessage,
    Product,
    PurchaseLine,
    StockLevel,
    Store,
    TierChange,
    User,
)
from portal.services import settings as settings_service
from portal.services.clock import utcnow, zone
from portal.services.mail import compose, links, outbox, preferences
from portal.services.scores.store import TIER_RANK

JOB = "mail.digest"
SENT_STATES = ("sent", "delivered", "undelivered", "dry-run")
RUNNING = ("queued", "sending", "waiting")
CATCH_UP = timedelta(hours=24)


def user_zone(user: User, stores: dict[int, Store]) -> ZoneInfo:
    """The user's store's time zone; store-less users: the first store's, else UTC."""
    if user.store_id in stores:
        return zone(stores[user.store_id].timezone)
    first = min(stores) if stores else None
    return zone(stores[first].timezone) if first is not None else zone("UTC")


def due_moment(choices: preferences.Choices, now_utc: datetime, tz: ZoneInfo) -> tuple[datetime, str] | None:
    """This ISO week's digest moment (aware, local) and its period key, when ``now`` is within 24 h after it."""
    local = now_utc.astimezone(tz)
    monday = (local - timedelta(days=local.weekday())).date()
    day = monday + timedelta(days=choices.digest_weekday)
    due = datetime(day.year, day.month, day.day, choices.digest_hour, tzinfo=tz)
    if not (due <= local < due + CATCH_UP):
        return None
    year, week, _ = day.isocalendar()
    return due, f"digest:{year}-W{week:02d}"


def scope_of(user: User) -> tuple[bool, int | None]:
    """(may receive, store id): a store user's store; admins and store-less marketers every store (None);
    a manager without a store sees nothing, so gets no digest."""
    if user.role != "admin" and user.store_id is not None:
        return True, user.store_id
    if user.role == "manager":
        return False, None
    return True, None


def _lines(start: datetime, end: datetime, store_id: int | None):
    condition = [PurchaseLine.purchased_at >= start, PurchaseLine.purchased_at < end]
    if store_id is not None:
        condition.append(PurchaseLine.store_id == store_id)
    return condition


def _week(start: datetime, end: datetime, store_id: int | None) -> dict:
    """Customers who bought, revenue and repeat rate (buyers who had bought before the week) in [start, end)."""
    revenue, buyers = db.session.execute(
        select(func.coalesce(func.sum(PurchaseLine.amount), 0), func.count(distinct(PurchaseLine.customer_id))).where(
            *_lines(start, end, store_id)
        )
    ).one()
    earlier = aliased(PurchaseLine)
    before = [earlier.customer_id == PurchaseLine.customer_id, earlier.purchased_at < start]
    if store_id is not None:
        before.append(earlier.store_id == store_id)
    returning = db.session.scalar(
        select(func.count(distinct(PurchaseLine.customer_id))).where(
            *_lines(start, end, store_id), PurchaseLine.customer_id.isnot(None), exists().where(*before)
        )
    )
    return {
        "customers": int(buyers or 0),
        "revenue": float(revenue or 0),
        "repeat_rate": (returning / buyers) if buyers else None,
    }


def _change(now: float | None, before: float | None) -> float | None:
    if now is None or not before:
        return None
    return (now - before) / before


def _customer_scope(query, store_id: int | None):
    return query.where(Customer.store_id == store_id) if store_id is not None else query


def numbers(store_id: int | None, end_local: datetime) -> dict:
    """The digest's numbers for the week ending at ``end_local`` (store-local), for one store or all (None)."""
    end = end_local.replace(tzinfo=None)  # purchase times are stored as store-local wall time
    start, previous = end - timedelta(days=7), end - timedelta(days=14)
    end_utc = end_local.astimezone(timezone.utc)
    start_utc = end_utc - timedelta(days=7)
    this, last = _week(start, end, store_id), _week(previous, start, store_id)
    for key in ("customers", "revenue", "repeat_rate"):
        this[f"{key}_change"] = _change(this[key], last[key])

    moves = db.session.execute(
        _customer_scope(
            select(TierChange.old_tier, TierChange.new_tier, func.count())
            .join(Customer, Customer.id == TierChange.customer_id)
            .where(TierChange.at >= start_utc, TierChange.at < end_utc),
            store_id,
        ).group_by(TierChange.old_tier, TierChange.new_tier)
    ).all()
    tier_moves = sorted(
        ({"from": a or "no tier", "to": b or "no tier", "count": int(n)} for a, b, n in moves),
        key=lambda m: -m["count"],
    )
    tiers_up = sum(m[2] for m in moves if TIER_RANK.get(m[1], 0) > TIER_RANK.get(m[0], 0))
    tiers_down = sum(m[2] for m in moves) - tiers_up

    band_query = select(MailEvent.data).where(
        MailEvent.kind == "bands", MailEvent.created_at >= start_utc, MailEvent.created_at < end_utc
    )
    if store_id is not None:
        band_query = band_query.where(MailEvent.store_id == store_id)
    band_totals: dict[str, int] = {}
    for data in db.session.scalars(band_query):
        for pair, n in (data or {}).get("moves", {}).items():
            band_totals[pair] = band_totals.get(pair, 0) + int(n)
    band_moves = [{"move": k, "count": v} for k, v in sorted(band_totals.items(), key=lambda kv: -kv[1])]

    value = func.coalesce(Customer.clv_12m, Customer.spend_12m, 0)
    high, at_risk = db.session.execute(
        _customer_scope(
            select(func.count(), func.coalesce(func.sum(Customer.churn_probability * value), 0)).where(
                Customer.churn_band == "High",
                Customer.erased_at.is_(None),
                or_(Customer.lifecycle.is_(None), Customer.lifecycle != "Lost"),
            ),
            store_id,
        )
    ).one()

    return {
        "start": start,
        "end": end,
        "this": this,
        "last": last,
        "tier_moves": tier_moves[:8],
        "tiers_up": int(tiers_up),
        "tiers_down": int(tiers_down),
        "band_moves": band_moves[:8],
        "high_customers": int(high or 0),
        "value_at_risk": float(at_risk or 0),
        "campaigns": _campaigns(store_id, start_utc),
        "flows": _flows(store_id, start),
        "dead_stock": _dead_stock(store_id, start, end),
    }


def _campaigns(store_id: int | None, since_utc: datetime) -> list[dict]:
    """Campaigns running, or started or finished in the week: messages sent, coupons redeemed."""
    query = select(Campaign).where(
        or_(Campaign.status.in_(RUNNING), Campaign.started_at >= since_utc, Campaign.finished_at >= since_utc)
    )
    if store_id is not None:
        query = query.where(Campaign.store_id == store_id)
    out = []
    for campaign in db.session.scalars(query.order_by(Campaign.id.desc()).limit(10)):
        sent, redeemed = db.session.execute(
            select(
                func.count(case((OutboxMessage.status.in_(SENT_STATES), 1))),
                func.count(OutboxMessage.redeemed_at),
            ).where(OutboxMessage.campaign_id == campaign.id, OutboxMessage.group == "message")
        ).one()
        out.append(
            {
                "id": campaign.id,
                "name": campaign.name,
                "status": campaign.status,
                "sent": int(sent or 0),
                "redeemed": int(redeemed or 0),
                "rate": (redeemed / sent) if sent else None,
                "url": url_for("campaigns.detail", campaign_id=campaign.id, _external=True),
            }
        )
    return out


def _flows(store_id: int | None, start: datetime) -> list[dict] | None:
    """Automations and the customers who entered them in the week; None where this version has none."""
    flow, entry = getattr(models, "Flow", None), getattr(models, "FlowEntry", None)
    if flow is None or entry is None:
        return None
    query = select(flow.id, flow.kind, flow.enabled, func.count(entry.id)).outerjoin(
        entry, and_(entry.flow_id == flow.id, entry.entered_on >= start.date())
    )
    if store_id is not None:
        query = query.where(flow.store_id == store_id)
    rows = db.session.execute(query.group_by(flow.id, flow.kind, flow.enabled).order_by(flow.kind)).all()
    return [{"kind": kind, "enabled": bool(enabled), "entered": int(n)} for _, kind, enabled, n in rows]


def _dead_stock(store_id: int | None, start: datetime, end: datetime) -> dict:
    """Dead-stock products (sold ratio below the setting) sold in the week at their store: units and revenue."""
    ratio = float(settings_service.get("bundles.dead_stock_ratio"))
    initial, sold = StockLevel.initial_stock, StockLevel.total_sold
    dead = initial.isnot(None) & (initial > 0) & sold.isnot(None) & (sold >= 0)
    dead = dead & (cast(sold, Float) / cast(func.nullif(initial, 0), Float) < ratio)
    query = (
        select(
            func.count(distinct(PurchaseLine.product_id)),
            func.coalesce(func.sum(PurchaseLine.quantity), 0),
            func.coalesce(func.sum(PurchaseLine.amount), 0),
        )
        .select_from(PurchaseLine)
        .join(
            StockLevel,
            and_(StockLevel.product_id == PurchaseLine.product_id, StockLevel.store_id == PurchaseLine.store_id),
        )
        .join(Product, Product.id == PurchaseLine.product_id)
        .where(dead, *_lines(start, end, store_id))
    )
    products, units, revenue = db.session.execute(query).one()
    return {"products": int(products or 0), "units": float(units or 0), "revenue": float(revenue or 0)}


def build_due(now: datetime | None = None) -> int:
    """Queue the digests due now (one per user and ISO week); returns how many were queued."""
    now = now or utcnow()
    stores = {s.id: s for s in db.session.scalars(select(Store))}
    saved = preferences.all_choices()
    queued = 0
    for user in db.session.scalars(select(User).where(User.active.is_(True)).order_by(User.id)).all():
        choices = saved.get(user.id) or preferences.Choices()
        allowed, store_id = scope_of(user)
        if not (choices.digest and allowed):
            continue
        due = due_moment(choices, now, user_zone(user, stores))
        if due is None or outbox.exists(user.id, "digest", due[1]):
            continue
        end_local, key = due
        store = stores.get(store_id) if store_id is not None else None
        currency_store = store or (stores[min(stores)] if stores else None)
        with links.external():
            figures = numbers(store_id, end_local)
        where = store.name if store is not None else "all stores"
        subject = f"Your week at {where}: {figures['this']['customers']:,} customers, revenue " + (
            _money_text(figures["this"]["revenue"], currency_store)
        )
        built = compose.build(
            user,
            "digest",
            "digest",
            subject,
            n=figures,
            store=currency_store,
            where=where,
            period=f"{figures['start']:%a %d %b} – {(figures['end'] - timedelta(days=1)):%a %d %b %Y}",
        )
        queued += outbox.add(
            user, "digest", key, store_id, built.subject, built.text, built.html, built.unsubscribe_url
        )
    return queued


def _money_text(value: float, store: Store | None) -> str:
    return money(value, store)


@jobs.job(JOB)
def digest_job(progress, now: str | None = None) -> dict:
    """Queue and send the digests due this hour (hourly, and by ``flask mail send-due``)."""
    at = datetime.fromisoformat(now) if now else utcnow()
    progress(0.1, "building digests")
    queued = build_due(at)
    progress(0.6, "sending")
    sent = outbox.deliver(now=at)
    done = ", ".join(f"{n} {status}" for status, n in sorted(sent.items())) or "nothing to send"
    return {"message": f"{queued} digests queued; {done}", "queued": queued, "sent": sent}
