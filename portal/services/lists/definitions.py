"""The lists pages, exports, segments and the CLI know by name: customers, at-risk customers, bundle
suggestions, dead stock and campaign recipients.

Each is registered with its query (filters and store scoping through the services), its sort
options, its stable snake_case export headers (DESIGN.md "Contracts") and its row formatter.
Importing this module fills ``LISTS``; ``portal.services.lists.exports`` does so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, cast, func, or_, select

from portal.extensions import db
from portal.models import BundleRule, Customer, ModelRecord, OutboxMessage, Product, StockLevel, Store
from portal.params import parse_id
from portal.security import scope_to_user
from portal.services import settings as settings_service
from portal.services.customers import customers as customer_service
from portal.services.customers import search as customer_search
from portal.services.lists.cells import e164
from portal.services.lists.registry import ExportError, ListDef, first_value, register

CUSTOMER_HEADERS = (
    "customer_id",
    "name",
    "phone",
    "email",
    "store",
    "sms_consent",
    "tier",
    "reward",
    "monetary",
    "frequency",
    "recency",
    "total_quantity",
    "num_unique_products",
    "avg_price_per_unit",
    "store_visit_frequency",
    "active_days",
    "avg_purchase_gap_days",
    "churn_probability",
    "churn_band",
    "p_alive",
    "expected_purchases_90d",
    "clv_12m",
    "scored_at",
    "lifecycle",
    "p_return_12m",
)
BUNDLE_HEADERS = ("antecedents", "consequents", "support", "confidence", "lift", "baskets")
DEAD_STOCK_HEADERS = ("product_id", "product_name", "initial_stock", "total_sold", "sold_ratio", "stock_value")
RECIPIENT_HEADERS = (
    "campaign_id",
    "customer_id",
    "phone",
    "group",
    "status",
    "error_code",
    "message_sid",
    "sent_at",
    "coupon_code",
    "redeemed_at",
)


# --- customers and at-risk --------------------------------------------------------------------


def _risk_value():
    """Churn probability x value (12-month CLV where scored, else the last 12 months' spend)."""
    value = func.coalesce(cast(Customer.clv_12m, Float), cast(Customer.spend_12m, Float))
    return cast(Customer.churn_probability, Float) * value


def _customer_query(params: Mapping, user):
    return customer_service.filtered_customers(params, user)


def _at_risk_query(params: Mapping, user):
    """Scored customers worth saving: Lost ones only with ``include_lost=1`` (or ``lifecycle=Lost``)."""
    query = customer_service.filtered_customers(params, user).where(Customer.churn_band.isnot(None))
    return customer_service.savable(query, params)


def _customer_columns() -> tuple:
    c = Customer
    return (
        c.id,
        c.external_id,
        c.name,
        c.phone,
        c.email,
        c.store_id,
        c.sms_consent,
        c.tier,
        c.monetary,
        c.frequency,
        c.recency,
        c.total_quantity,
        c.num_unique_products,
        c.avg_price_per_unit,
        c.store_visit_frequency,
        c.active_days,
        c.avg_purchase_gap_days,
        c.churn_probability,
        c.churn_band,
        c.p_alive,
        c.expected_purchases_90d,
        c.clv_12m,
        c.scored_at,
        c.lifecycle,
        c.p_return_12m,
    )


def _customer_context() -> dict:
    values = settings_service.all_values()
    stores = {s.id: (s.name, s.phone_region) for s in db.session.scalars(select(Store))}
    rewards = {t: values.get(f"reward.{t}") for t in settings_service.TIERS}
    return {"stores": stores, "rewards": rewards}


def _customer_row(ctx: dict) -> Callable[[Any], tuple]:
    stores, rewards = ctx["stores"], ctx["rewards"]

    def row(r) -> tuple:
        store_name, region = stores.get(r[5], (None, None))
        return (
            r[1],
            r[2],
            e164(r[3], region),
            r[4],
            store_name,
            r[6],
            r[7],
            rewards.get(r[7]) if r[7] else None,
            *r[8:],
        )

    return row


CUSTOMER_SORTS = dict(customer_service.SORTS)

register(
    ListDef(
        name="customers",
        title="Customers",
        headers=CUSTOMER_HEADERS,
        filter_keys=customer_service.FILTER_KEYS,
        query=_customer_query,
        key=Customer.id,
        sorts=CUSTOMER_SORTS,
        default_sort="",
        columns=_customer_columns,
        row=_customer_row,
        context=_customer_context,
        endpoint="customers.index",
        customer_type=True,
    )
)
register(
    ListDef(
        name="at-risk",
        title="At-risk customers",
        headers=CUSTOMER_HEADERS,
        filter_keys=customer_service.FILTER_KEYS,
        query=_at_risk_query,
        key=Customer.id,
        sorts={**CUSTOMER_SORTS, "risk_value": _risk_value()},
        default_sort="-risk_value",
        columns=_customer_columns,
        row=_customer_row,
        context=_customer_context,
        endpoint="churn.index",
        customer_type=True,
    )
)


# --- bundles -----------------------------------------------------------------------------------


def _active_bundles_model():
    return (
        select(ModelRecord.id)
        .where(ModelRecord.name == "bundles", ModelRecord.active.is_(True))
        .order_by(ModelRecord.trained_at.desc(), ModelRecord.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _bundle_query(params: Mapping, user):
    query = select(BundleRule).where(BundleRule.model_id == _active_bundles_model())
    q = first_value(params, "q")
    if q:
        like = f"%{q}%"
        query = query.where(or_(BundleRule.antecedent_names.ilike(like), BundleRule.consequent_names.ilike(like)))
    for key, col in (
        ("min_lift", BundleRule.lift),
        ("min_confidence", BundleRule.confidence),
        ("min_support", BundleRule.support),
    ):
        raw = first_value(params, key)
        try:
            query = query.where(col >= float(raw)) if raw else query
        except ValueError:
            pass
    return query


def _bundle_columns() -> tuple:
    b = BundleRule
    return (
        b.antecedents,
        b.consequents,
        b.antecedent_names,
        b.consequent_names,
        b.support,
        b.confidence,
        b.lift,
        b.baskets,
    )


def _bundle_row(ctx: dict) -> Callable[[Any], tuple]:
    def row(r) -> tuple:
        return (r[2] or ", ".join(map(str, r[0] or [])), r[3] or ", ".join(map(str, r[1] or [])), *r[4:])

    return row


register(
    ListDef(
        name="bundles",
        title="Bundle suggestions",
        headers=BUNDLE_HEADERS,
        filter_keys=("q", "min_lift", "min_confidence", "min_support"),
        query=_bundle_query,
        key=BundleRule.id,
        sorts={
            "lift": BundleRule.lift,
            "confidence": BundleRule.confidence,
            "support": BundleRule.support,
            "baskets": BundleRule.baskets,
        },
        default_sort="-lift",
        columns=_bundle_columns,
        row=_bundle_row,
        endpoint="bundles.index",
    )
)


# --- dead stock --------------------------------------------------------------------------------


def _sold_ratio():
    return cast(StockLevel.total_sold, Float) / cast(StockLevel.initial_stock, Float)


def _dead_stock_query(params: Mapping, user):
    ratio = float(settings_service.get("bundles.dead_stock_ratio"))
    query = (
        select(StockLevel)
        .join(Product, StockLevel.product_id == Product.id)
        # Rows with a missing or negative total_sold are data errors (the Bundles page lists them), not dead stock.
        .where(
            StockLevel.initial_stock > 0,
            StockLevel.total_sold.isnot(None),
            StockLevel.total_sold >= 0,
            cast(StockLevel.total_sold, Float) < ratio * cast(StockLevel.initial_stock, Float),
        )
    )
    if user is not None:
        query = scope_to_user(query, StockLevel.store_id, user)
    q = first_value(params, "q")
    if q:  # a product id by its start, any case, or a word of its name (a few thousand products: no index needed)
        query = query.where(
            or_(
                Product.external_id.ilike(_like_prefix(q), escape="\\"),
                Product.name.ilike("%" + _like_prefix(q), escape="\\"),
            )
        )
    store = first_value(params, "store")
    if store:
        query = query.join(Store, StockLevel.store_id == Store.id).where(
            or_(Store.name == store, Store.id == (parse_id(store) if parse_id(store) is not None else -1))
        )
    return query


def _like_prefix(text: str) -> str:
    """A LIKE pattern for "starts with ``text``" (its own % and _ taken literally; escape character \\)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _dead_stock_columns() -> tuple:
    return (Product.external_id, Product.name, StockLevel.initial_stock, StockLevel.total_sold, Product.price)


def _quantity(value: Decimal | None) -> int | float | None:
    """A stock quantity as a plain number (100, not 100.000)."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _dead_stock_row(ctx: dict) -> Callable[[Any], tuple]:
    def row(r) -> tuple:
        initial, sold, price = r[2], r[3] or Decimal(0), r[4]
        ratio = float(sold) / float(initial) if initial else None
        value = (
            ((Decimal(initial) - Decimal(sold)) * Decimal(price)).quantize(Decimal("0.01"))
            if price is not None and initial is not None
            else None
        )
        return (r[0], r[1], _quantity(initial), _quantity(sold), round(ratio, 4) if ratio is not None else None, value)

    return row


register(
    ListDef(
        name="dead-stock",
        title="Dead stock",
        headers=DEAD_STOCK_HEADERS,
        filter_keys=("q", "store"),
        query=_dead_stock_query,
        key=StockLevel.id,
        sorts={"sold_ratio": _sold_ratio(), "initial_stock": StockLevel.initial_stock},
        default_sort="sold_ratio",
        columns=_dead_stock_columns,
        row=_dead_stock_row,
        endpoint="bundles.index",
    )
)


# --- campaign recipients -----------------------------------------------------------------------


def _recipients_query(params: Mapping, user):
    raw = first_value(params, "campaign")
    if parse_id(raw) is None:
        raise ExportError("Choose a campaign: campaign-recipients needs campaign=<id> in the filter.")
    query = (
        select(OutboxMessage)
        .join(Customer, OutboxMessage.customer_id == Customer.id)
        .where(OutboxMessage.campaign_id == parse_id(raw), Customer.erased_at.is_(None))
    )
    if user is not None:
        query = scope_to_user(query, Customer.store_id, user)
    for key, col in (("status", OutboxMessage.status), ("group", OutboxMessage.group)):
        value = first_value(params, key)
        if value:
            query = query.where(col == value)
    q = first_value(params, "q")
    if q:  # the same prefix search as the customer list (id, name, e-mail, phone)
        query = query.where(customer_search.condition(q))
    return query


def _recipient_columns() -> tuple:
    o = OutboxMessage
    return (
        o.campaign_id,
        Customer.external_id,
        o.phone,
        o.group,
        o.status,
        o.error_code,
        o.message_sid,
        o.sent_at,
        o.coupon_code,
        o.redeemed_at,
    )


def _recipient_row(ctx: dict) -> Callable[[Any], tuple]:
    def row(r) -> tuple:
        return (r[0], r[1], e164(r[2]), *r[3:])

    return row


register(
    ListDef(
        name="campaign-recipients",
        title="Campaign recipients",
        headers=RECIPIENT_HEADERS,
        filter_keys=("campaign", "status", "group", "q"),
        query=_recipients_query,
        key=OutboxMessage.id,
        sorts={"sent_at": OutboxMessage.sent_at, "status": OutboxMessage.status},
        default_sort="",
        columns=_recipient_columns,
        row=_recipient_row,
        endpoint="campaigns.index",
    )
)
