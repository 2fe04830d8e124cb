"""The dashboard's numbers: every one an SQL aggregate, scoped to the user's store, with its list's link.

Scoping: customer numbers (customers, active, tiers, High risk) count customers of the store, through
``customers.filtered_customers`` with the very filters their link carries, so the linked list shows
the same count. Money from purchase lines (revenue, revenue by tier, cohorts) counts the lines sold in
the store (``PurchaseLine.store_id``). Stock and campaigns use their own store column.

Time: "now" for the data is the reference day = the day of the latest purchase line in the data
(all stores) — the same reference the stored features (recency) are computed against, so "bought
in the last 30 days" on the dashboard and ``max_recency=29`` on the customers list agree.

When: the customer numbers (``customer_kpis``) add up the per-store summaries stored when customers
change (``summaries.customers``); stock and campaigns are one indexed query each, per page view;
the numbers that read every purchase line (``line_summary``: 30-day
revenue, revenue by tier, cohorts) take seconds on a large store, so ``dashboard_summary``
computes them after each scoring run and the page reads the stored copy.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Float, Integer, case, cast, func, literal_column, select

from portal.extensions import db
from portal.models import Campaign, Customer, Product, PurchaseLine, StockLevel, Store
from portal.security import scope_to_user, user_store_id
from portal.services import settings as settings_service
from portal.services.customers import customers as customer_service
from portal.services.customers.customers import LIFECYCLES
from portal.services.summaries import campaigns as campaign_summaries
from portal.services.summaries import customers as customer_summaries

TIERS = settings_service.TIERS
BANDS = settings_service.BANDS
ACTIVE_DAYS = 90
REVENUE_DAYS = 30
CHART_MONTHS = 12
COHORT_MONTHS = 12
SENT = ("sent", "delivered", "undelivered")  # accepted by Twilio
HEAT_BUCKETS = 10


class UnknownStore(LookupError):
    """The ``?store=`` asked for does not exist."""


@dataclass
class Scope:
    """Whose numbers the dashboard shows: one store, or all stores the user may see."""

    user: object
    store: Store | None = None  # the store the numbers are limited to (None: every store the user sees)
    can_switch: bool = False  # the user sees every store and may pick one
    stores: list = field(default_factory=list)

    @property
    def params(self) -> dict[str, str]:
        """The filter every link carries so the linked list is scoped like the number."""
        return {"store": self.store.name} if self.store is not None and self.can_switch else {}

    @property
    def store_id(self) -> int | None:
        """The picked store's id (None: every store the user sees)."""
        return self.store.id if self.store is not None else None

    def restrict(self, query, column):
        """Restrict a query on a ``store_id`` column to this scope (the user's store, then the pick).

        A scope without a user (the summary job after scoring) is not limited by a user's store.
        """
        if self.user is not None:
            query = scope_to_user(query, column, self.user)
        if self.store is not None:
            query = query.where(column == self.store.id)
        return query


def resolve_scope(user, store: str | None) -> Scope:
    """The dashboard scope for ``user``: their store; admins (and store-less marketers) may pick one.

    Raises:
        UnknownStore: an admin asked for a store name/id that does not exist.
    """
    own = user_store_id(user)
    if own is not None or user.role == "manager":
        return Scope(user=user, store=db.session.get(Store, own) if own is not None else None)
    stores = db.session.scalars(select(Store).order_by(Store.name)).all()
    picked = None
    store = (store or "").strip()
    if store:
        picked = next((s for s in stores if s.name == store or str(s.id) == store), None)
        if picked is None:
            raise UnknownStore(store)
    return Scope(user=user, store=picked, can_switch=True, stores=list(stores))


# --------------------------------------------------------------------------- SQL helpers


def dialect_name() -> str:
    """'sqlite' or 'postgresql': month arithmetic differs between them."""
    return db.session.get_bind().dialect.name


def month_key(column, dialect: str):
    """The calendar month of a timestamp as 'YYYY-MM', computed by the database.

    SQLite has no date_trunc; PostgreSQL has no strftime. Constants are literal SQL (not bound
    parameters) so the same expression can be grouped by on PostgreSQL.
    """
    if dialect == "sqlite":
        return func.strftime(literal_column("'%Y-%m'"), column)
    return func.to_char(func.date_trunc(literal_column("'month'"), column), literal_column("'YYYY-MM'"))


def month_number(column, dialect: str):
    """The calendar month of a timestamp as the integer YYYYMM (one strftime call per row on SQLite)."""
    if dialect == "sqlite":
        return cast(func.strftime(literal_column("'%Y%m'"), column), Integer)
    return cast(func.extract("year", column), Integer) * literal_column("100", Integer) + cast(
        func.extract("month", column), Integer
    )


def index_of(yyyymm):
    """YYYYMM -> months since year 0 (year * 12 + month - 1): cohort offsets become a subtraction."""
    hundred, twelve, one = (literal_column(str(v), Integer) for v in (100, 12, 1))
    return (yyyymm // hundred) * twelve + yyyymm % hundred - one  # // : integer division on both backends


def month_index(column, dialect: str):
    """Months since year 0 of a timestamp (year * 12 + month - 1), computed by the database."""
    return index_of(month_number(column, dialect))


def index_to_month(index: int) -> str:
    """Months since year 0 -> 'YYYY-MM'."""
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def reference_time() -> datetime | None:
    """The latest purchase in the data (all stores): the "today" of every number.

    Asked per store, so each maximum is one probe of the (store_id, purchased_at) index; a plain
    MAX over the table scans every line (300 ms at 1.6M lines on SQLite). Every line has a store.
    """
    latest = (
        select(func.max(PurchaseLine.purchased_at))
        .where(PurchaseLine.store_id == Store.id)
        .correlate(Store)
        .scalar_subquery()
    )
    return db.session.scalar(select(func.max(latest)).select_from(Store))


def _customers(scope: Scope, **filters) -> tuple[dict, object]:
    params = {**scope.params, **{k: str(v) for k, v in filters.items()}}
    return params, customer_service.filtered_customers(params, scope.user)


# --------------------------------------------------------------------------- KPIs


def customer_kpis(scope: Scope) -> dict:
    """Customers, active in the last 90 days, per tier, per band, per lifecycle status and High risk's 12-month spend.

    Added up from the stored customer summaries of the scope's stores (``summaries.customers``,
    kept when the data changes; ``as_of`` says when), which count the customers the linked list shows
    (``filtered_customers`` with the same filters); "active" and "recent" count ``recency <= N``,
    exactly the lists' ``max_recency=N`` filter. The cube only answers the scope's store filter, which
    is all the dashboard sets; ``_live_customer_kpis`` is the direct computation it must equal.
    """
    params, _ = _customers(scope)
    stored = customer_summaries.for_user(scope.user, params)
    if stored is None:
        return _live_customer_kpis(scope)
    groups, as_of = stored
    tiers: dict = defaultdict(int)
    bands: dict = defaultdict(int)
    statuses: dict = defaultdict(int)
    high, lost_high, spend_high = 0, 0, []
    total = scored = active = recent = 0
    for g in groups:
        n = g["n"]
        tiers[g["tier"]] += n
        bands[g["churn_band"]] += n
        statuses[g["lifecycle"]] += n
        total, scored = total + n, scored + g["n_scored"]
        active += g["n_active"]
        recent += g["n_recent"]
        if g["churn_band"] == "High":
            if g["lifecycle"] == "Lost":
                lost_high += n
            else:
                high += n
                spend_high.append(g["sum_spend_12m"])
    counts = dict(total=total, scored=scored, active=active, recent=recent, tiers=tiers, bands=bands, as_of=as_of)
    return {
        **_customer_numbers(scope, params, counts),
        **_lifecycle_numbers(scope, statuses, high, lost_high, spend_high),
    }


def _live_customer_kpis(scope: Scope) -> dict:
    """``customer_kpis`` computed directly from the customers (one pass grouped by store, tier, band);
    ``as_of`` None. The reference the stored summaries are tested against."""
    params, query = _customers(scope)
    base = query.subquery()
    rows = db.session.execute(
        select(
            base.c.tier,
            base.c.churn_band,
            func.count(),
            func.count(base.c.scored_at),
            func.count(case((base.c.recency <= ACTIVE_DAYS - 1, 1))),
            func.count(case((base.c.recency <= REVENUE_DAYS - 1, 1))),
        ).group_by(base.c.store_id, base.c.tier, base.c.churn_band)
    ).all()
    tiers: dict = defaultdict(int)
    bands: dict = defaultdict(int)
    total = scored = active = recent = 0
    for tier, band, n, n_scored, n_active, n_recent in rows:
        tiers[tier] += n
        bands[band] += n
        total, scored, active, recent = total + n, scored + n_scored, active + n_active, recent + n_recent
    counts = dict(total=total, scored=scored, active=active, recent=recent, tiers=tiers, bands=bands, as_of=None)
    return {**_customer_numbers(scope, params, counts), **_lifecycle_kpis(scope, query)}


def _customer_numbers(scope: Scope, params: dict, counts: dict) -> dict:
    """The customer KPIs with their lists' links, from totals and per-tier and per-band counts."""
    tiers, bands = counts["tiers"], counts["bands"]
    return {
        "total": int(counts["total"]),
        "scored": int(counts["scored"]),
        "params": params,
        "active": int(counts["active"]),
        "active_params": {**params, "max_recency": str(ACTIVE_DAYS - 1)},
        "recent_buyers": int(counts["recent"]),
        "recent_params": {**params, "max_recency": str(REVENUE_DAYS - 1)},
        "tiers": [{"tier": t, "count": int(tiers.get(t, 0)), "params": {**scope.params, "tier": t}} for t in TIERS],
        "untiered": {"count": int(tiers.get(None, 0)), "params": {**scope.params, "tier": "none"}},
        "has_tiers": any(tiers.get(t) for t in TIERS),
        "bands": [{"band": b, "count": int(bands.get(b, 0)), "params": {**scope.params, "band": b}} for b in BANDS],
        "has_bands": any(bands.get(b) for b in BANDS),
        "as_of": counts["as_of"],
    }


def _lifecycle_kpis(scope: Scope, query) -> dict:
    """Customers per lifecycle status, and High churn risk among the savable ones (Lost left out).

    The High KPI links to the at-risk list, which leaves Lost customers out by default, so it counts
    the same people. Grouped by (store, lifecycle, band): ``ix_customers_store_lifecycle`` leads.
    """
    base = query.subquery()
    rows = db.session.execute(
        select(
            base.c.lifecycle,
            base.c.churn_band,
            func.count(),
            func.sum(case((base.c.churn_band == "High", base.c.spend_12m))),
        ).group_by(base.c.store_id, base.c.lifecycle, base.c.churn_band)
    ).all()
    statuses: dict = defaultdict(int)
    high, lost_high, spend_high = 0, 0, []
    for status, band, n, spend in rows:
        statuses[status] += n
        if band == "High":
            if status == "Lost":
                lost_high += n
                continue
            high += n
            if spend is not None:
                spend_high.append(float(spend))
    return _lifecycle_numbers(scope, statuses, high, lost_high, spend_high)


def _lifecycle_numbers(scope: Scope, statuses: dict, high: int, lost_high: int, spend_high: list) -> dict:
    """The lifecycle KPIs and the High risk box from their counts and 12-month spend parts."""
    return {
        "lifecycle": [
            {"status": s, "count": int(statuses.get(s, 0)), "params": {**scope.params, "lifecycle": s}}
            for s in LIFECYCLES
        ],
        "has_lifecycle": any(statuses.get(s) for s in LIFECYCLES),
        "high": {
            "count": int(high),
            "lost": int(lost_high),
            "spend_12m": round(math.fsum(spend_high), 2),
            "params": {**scope.params, "band": "High"},
        },
    }


def revenue_kpis(scope: Scope, reference: datetime | None) -> dict | None:
    """Revenue (net of returns) of the last 30 days up to the reference day vs the 30 days before."""
    if reference is None:
        return None
    day = datetime(reference.year, reference.month, reference.day)
    end = day + timedelta(days=1)
    start = end - timedelta(days=REVENUE_DAYS)
    before = start - timedelta(days=REVENUE_DAYS)
    amount = PurchaseLine.amount
    query = scope.restrict(
        select(
            func.coalesce(func.sum(case((PurchaseLine.purchased_at >= start, amount))), 0),
            func.coalesce(func.sum(case((PurchaseLine.purchased_at < start, amount))), 0),
        ).where(PurchaseLine.purchased_at >= before, PurchaseLine.purchased_at < end),
        PurchaseLine.store_id,
    )
    current, previous = (float(v) for v in db.session.execute(query).one())
    change = (current - previous) / abs(previous) if previous else None
    return {
        "current": current,
        "previous": previous,
        "change": change,
        "start": start.date(),
        "end": day.date(),
        "before": before.date(),
    }


def dead_stock_kpi(scope: Scope) -> dict:
    """Dead stock (sold ratio below the setting) and the value of its unsold units, like /bundles.

    The rules are the bundles page's: rows with initial stock missing or not positive, or total sold
    missing or negative, are errors (not counted); value = max(initial - sold, 0) x product price,
    rows without a price are counted apart.
    """
    ratio = float(settings_service.get("bundles.dead_stock_ratio"))
    initial, sold, price = StockLevel.initial_stock, StockLevel.total_sold, Product.price
    valid = initial.isnot(None) & (initial > 0) & sold.isnot(None) & (sold >= 0)
    dead = valid & (cast(sold, Float) / cast(func.nullif(initial, 0), Float) < ratio)  # the page's float sold ratio
    unsold = case((initial > sold, initial - sold), else_=0)
    query = scope.restrict(
        select(
            func.count(StockLevel.id),
            func.count(case((dead, 1))),
            func.coalesce(func.sum(case((dead & price.isnot(None), unsold * price))), 0),
            func.count(case((dead & price.is_(None), 1))),
        )
        .select_from(StockLevel)
        .join(Product, Product.id == StockLevel.product_id),
        StockLevel.store_id,
    )
    rows, dead_rows, value, unpriced = db.session.execute(query).one()
    return {
        "rows": int(rows),
        "dead": int(dead_rows),
        "value": float(value or 0),
        "unpriced": int(unpriced),
        "ratio": ratio,
        "params": scope.params,
    }


def last_campaign(scope: Scope) -> dict | None:
    """The latest campaign the user may see in this scope, with its outbox counts (stored: ``as_of`` says when)."""
    query = select(Campaign)
    query = scope.restrict(query, Campaign.store_id)
    campaign = db.session.scalars(query.order_by(Campaign.created_at.desc(), Campaign.id.desc()).limit(1)).first()
    if campaign is None:
        return None
    stored = campaign_summaries.read(campaign)
    counts = stored.counts
    control = counts.get("control", 0)
    return {
        "campaign": campaign,
        "as_of": stored.as_of,
        "counts": counts,
        "recipients": sum(counts.values()) - control,
        "control": control,
        "sent": sum(counts.get(s, 0) for s in SENT),
        "delivered": counts.get("delivered", 0),
        "dry_run": counts.get("dry-run", 0),
        "failed": counts.get("failed", 0) + counts.get("undelivered", 0),
    }


# --------------------------------------------------------------------------- charts


def _month_labels(reference: datetime, months: int) -> list[str]:
    last = reference.year * 12 + reference.month - 1
    return [index_to_month(i) for i in range(last - months + 1, last + 1)]


def revenue_by_tier(scope: Scope, reference: datetime | None, months: int = CHART_MONTHS) -> dict | None:
    """Monthly revenue per tier (last ``months`` calendar months to the reference), grouped in SQL.

    Lines of anonymous sales are "Anonymous"; customers without a tier "No tier".
    Returns a chart spec {type, labels, datasets} or None without data.
    """
    if reference is None:
        return None
    labels = _month_labels(reference, months)
    start = datetime(int(labels[0][:4]), int(labels[0][5:]), 1)
    dialect = dialect_name()
    tier = case((PurchaseLine.customer_id.is_(None), "Anonymous"), else_=func.coalesce(Customer.tier, "No tier"))
    inner = scope.restrict(
        select(
            month_key(PurchaseLine.purchased_at, dialect).label("month"),
            tier.label("tier"),
            PurchaseLine.amount.label("amount"),
        )
        .select_from(PurchaseLine)
        .outerjoin(Customer, Customer.id == PurchaseLine.customer_id)
        .where(PurchaseLine.purchased_at >= start),
        PurchaseLine.store_id,
    ).subquery()
    rows = db.session.execute(
        select(inner.c.month, inner.c.tier, func.sum(inner.c.amount)).group_by(inner.c.month, inner.c.tier)
    ).all()
    if not rows:
        return None
    values = {(m, t): float(v or 0) for m, t, v in rows}
    present = {t for _, t in values}
    order = [t for t in (*TIERS, "No tier", "Anonymous") if t in present]
    datasets = [{"label": t, "data": [round(values.get((m, t), 0.0), 2) for m in labels]} for t in order]
    return {
        "type": "bar",
        "labels": labels,
        "datasets": datasets,
        "scales": {"x": {"stacked": True}, "y": {"stacked": True}},
    }


def cohort_retention(scope: Scope, reference: datetime | None, months: int = COHORT_MONTHS) -> dict | None:
    """Share of each month's new customers who bought again N months later (aggregated in SQL).

    A customer's cohort is the month of their first purchase (positive amount) in the scope;
    "bought in month N" means at least one purchase line with a positive amount in the N-th
    calendar month after that. The latest ``months`` cohorts that have new customers are shown,
    offsets 0 .. months-1; offsets after the reference month are unknown (None), not 0.

    Returns:
        {"offsets": [0..], "rows": [{"cohort": "YYYY-MM", "size": n, "cells": [{"share", "count", "heat"} | None]}]}
        or None without purchases.
    """
    if reference is None:
        return None
    dialect = dialect_name()
    ym = month_number(PurchaseLine.purchased_at, dialect)
    activity = (
        scope.restrict(
            select(PurchaseLine.customer_id.label("cid"), ym.label("ym")).where(
                PurchaseLine.customer_id.isnot(None), PurchaseLine.amount > 0
            ),
            PurchaseLine.store_id,
        )
        .distinct()
        .subquery()
    )
    months_of = select(activity.c.cid, index_of(activity.c.ym).label("m")).subquery()
    # The first month by a window function, not a self-join: one pass over the customer-months
    # (SQLite re-evaluated the joined subquery per row: 25 s instead of 0.5 s on the demo store).
    first_month = func.min(months_of.c.m).over(partition_by=months_of.c.cid)
    with_first = select(months_of.c.m, first_month.label("c0")).subquery()
    last = reference.year * 12 + reference.month - 1
    offsets = (
        select(with_first.c.c0.label("cohort"), (with_first.c.m - with_first.c.c0).label("n")).where(
            with_first.c.m - with_first.c.c0 < months
        )
    ).subquery()
    rows = db.session.execute(
        select(offsets.c.cohort, offsets.c.n, func.count()).group_by(offsets.c.cohort, offsets.c.n)
    ).all()
    counts = {(int(c), int(n)): int(k) for c, n, k in rows}
    cohorts = sorted(c for c, n in counts if n == 0 and c <= last)[-months:]
    table = []
    for cohort in cohorts:
        size = counts[(cohort, 0)]
        cells = []
        for n in range(months):
            if cohort + n > last:
                cells.append(None)
                continue
            k = counts.get((cohort, n), 0)
            share = k / size
            cells.append({"count": k, "share": share, "heat": min(HEAT_BUCKETS - 1, int(share * HEAT_BUCKETS))})
        table.append({"cohort": index_to_month(cohort), "size": size, "cells": cells})
    return {"offsets": list(range(months)), "rows": table} if table else None


def count_chart(items: list[dict], key: str, label: str) -> dict:
    """A one-series bar chart spec from [{key: name, "count": n}]."""
    return {
        "type": "bar",
        "labels": [i[key] for i in items],
        "datasets": [{"label": label, "data": [i["count"] for i in items]}],
    }


def summary(scope: Scope) -> dict:
    """The dashboard's numbers for ``scope`` read from customers, stock and campaigns.

    The customer counts add up the stored per-store summaries (``customer_kpis``); stock and the last
    campaign are one indexed query each, computed per page view. The numbers that read every
    purchase line (30-day revenue, revenue by tier, cohorts) come from
    ``dashboard_summary.for_scope``, computed after each scoring run.
    """
    customers = customer_kpis(scope)
    tier_items = [*customers["tiers"], {"tier": "No tier", **customers["untiered"]}]
    return {
        "reference": reference_time(),
        "customers": customers,
        "stock": dead_stock_kpi(scope),
        "campaign": last_campaign(scope),
        "tier_chart": count_chart(tier_items, "tier", "Customers") if customers["has_tiers"] else None,
        "band_chart": _band_colours(count_chart(customers["bands"], "band", "Customers"))
        if customers["has_bands"]
        else None,
    }


def line_summary(scope: Scope) -> dict:
    """The numbers that read every purchase line of ``scope``, computed directly (seconds at 1.6M lines).

    Called by ``dashboard_summary`` after scoring and stored; a page view reads the stored copy.
    """
    reference = reference_time()
    return {
        "reference": reference,
        "revenue": revenue_kpis(scope, reference),
        "revenue_chart": revenue_by_tier(scope, reference),
        "cohorts": cohort_retention(scope, reference),
    }


BAND_COLOURS = {"High": "#c0392b", "Medium": "#f0a202", "Low": "#0b6e4f"}


def _band_colours(spec: dict) -> dict:
    """Risk reads as risk: High red, Medium amber, Low green (the table view carries the same numbers)."""
    for dataset in spec["datasets"]:
        dataset["backgroundColor"] = [BAND_COLOURS.get(label, "#6c757d") for label in spec["labels"]]
    return spec
