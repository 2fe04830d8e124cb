"""Purchase lines out of the database as the canonical DataFrame ``preprocessing`` expects."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Float, cast, select

from portal.extensions import db
from portal.models import Customer, Product, PurchaseLine, Store

CHUNK = 200_000


def lines_query(customers_only: bool = False):
    """SELECT of the canonical line columns; ``customers_only`` leaves out anonymous sales (inner join).

    Numbers are cast to float in SQL: building Decimal objects per value costs more than the query.
    """
    query = (
        select(
            Customer.external_id.label("customer_id"),
            PurchaseLine.transaction_ref.label("transaction_id"),
            PurchaseLine.purchased_at.label("purchase_date"),
            Product.external_id.label("product_id"),
            cast(PurchaseLine.quantity, Float).label("quantity"),
            cast(PurchaseLine.unit_price, Float).label("price_per_unit"),
            cast(PurchaseLine.amount, Float).label("total_amount"),
            Store.name.label("store"),
        )
        .select_from(PurchaseLine)
        .join(Product, Product.id == PurchaseLine.product_id)
        .join(Store, Store.id == PurchaseLine.store_id)
    )
    if customers_only:
        return query.join(Customer, Customer.id == PurchaseLine.customer_id)
    return query.outerjoin(Customer, Customer.id == PurchaseLine.customer_id)


def load_lines(store_id: int | None = None, until=None) -> pd.DataFrame:
    """All purchase lines (anonymous ones included) as a canonical frame, read in chunks.

    Ids are categoricals so millions of lines stay small in memory.

    Returns:
        Columns customer_id (external id, NaN for anonymous sales), transaction_id, purchase_date,
        product_id, product_name, quantity, price_per_unit, total_amount, store.
    """
    query = lines_query()
    if store_id is not None:
        query = query.where(PurchaseLine.store_id == store_id)
    if until is not None:
        query = query.where(PurchaseLine.purchased_at <= until)
    frames = []
    with db.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(query)
        for rows in result.partitions(CHUNK):
            # Plain tuples: pandas probes Row objects attribute by attribute, 100x slower.
            frame = pd.DataFrame.from_records([tuple(r) for r in rows], columns=list(result.keys()))
            frames.append(_typed(frame))
    if not frames:
        return _typed(
            pd.DataFrame(
                columns=[
                    "customer_id",
                    "transaction_id",
                    "purchase_date",
                    "product_id",
                    "quantity",
                    "price_per_unit",
                    "total_amount",
                    "store",
                ]
            )
        )
    lines = pd.concat(frames, ignore_index=True)
    for col in ("customer_id", "transaction_id", "product_id", "store"):
        lines[col] = lines[col].astype("category")
    return lines


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for col in ("quantity", "price_per_unit", "total_amount"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame["purchase_date"] = pd.to_datetime(frame["purchase_date"]).astype("datetime64[ns]")
    for col in ("customer_id", "transaction_id", "product_id", "store"):
        frame[col] = frame[col].astype("category")
    return frame


def product_names() -> dict[str, str]:
    """Product external id -> name, for rules and pitches."""
    return dict(db.session.execute(select(Product.external_id, Product.name)).all())
