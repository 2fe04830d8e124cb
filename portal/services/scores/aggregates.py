"""Per-customer features computed by the database (GROUP BY), for stores too big to pull into pandas.

Why it works this way: docs/design-notes.md#features-in-the-database.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Date, Float, and_, case, cast, distinct, func, select

from portal.extensions import db
from portal.models import Customer, PurchaseLine, Store
from preprocessing.churn import TREND_WINDOW_DAYS, WINDOW_COLUMNS
from preprocessing.features import reference_date

CHUNK = 200_000
_NS_PER_DAY = 86_400 * 10**9
SPEND_12M_DAYS = 365  # the window scoring uses for ``spend_12m``

_DTYPES = {
    "monetary": "float64",
    "frequency": "int64",
    "total_quantity": "float64",
    "num_unique_products": "int64",
    "avg_price_per_unit": "float64",
    "store_visit_frequency": "int64",
    "active_days": "int64",
    "avg_purchase_gap_days": "float64",
    "recency": "int64",
    "first_purchase": "datetime64[ns]",
    "last_purchase": "datetime64[ns]",
}


def use_sql_features() -> bool:
    """Whether scoring should aggregate in the database: yes on PostgreSQL, where it saves pulling
    every line into Python (bench.heavy); SQLite runs in-process anyway, so it keeps the pandas path."""
    return db.engine.dialect.name == "postgresql"


def latest_purchase() -> pd.Timestamp | None:
    """The store's last trading moment: the latest line over all lines, anonymous ones included."""
    value = db.session.execute(select(func.max(PurchaseLine.purchased_at))).scalar()
    return None if value is None else pd.Timestamp(value)


def stores_today() -> pd.Timestamp:
    """The latest local date among the stores (purchase times are each store's wall clock); UTC's without one."""
    from portal.services.clock import utcnow, zone

    now = utcnow()
    zones = db.session.scalars(select(Store.timezone).distinct()).all() or ["UTC"]
    return pd.Timestamp(max(now.astimezone(zone(name)).date() for name in zones))


def reference_moment() -> pd.Timestamp | None:
    """Scoring's default "as of": the latest purchase, never later than today (a future typo ages no one)."""
    latest = latest_purchase()
    return None if latest is None else reference_date(latest, stores_today())


def customer_features_sql(as_of=None, *, spend_12m: bool = False) -> pd.DataFrame:
    """The ``compute_features`` table, aggregated by the database and streamed into pandas.

    Args:
        as_of: reference timestamp (store-local wall time, like ``purchased_at``); lines after it
            are ignored. Default: the latest purchase over all lines, anonymous ones included, never
            later than today (``reference_moment``).
        spend_12m: also return ``spend_12m`` — net spend on lines dated after ``as_of - 365 days``,
            as scoring stores it (0.0 for customers with no such line).

    Returns:
        One row per customer with a line on or before ``as_of``, index ``customer_id`` (external
        id, str, sorted as ``load_lines``' categories are), columns ``FEATURE_COLUMNS`` with
        ``compute_features``' dtypes (money float64, day counts int64, timestamps datetime64[ns]).
    """
    if as_of is None:
        as_of = reference_moment()
        if as_of is None:
            return _empty(spend_12m)
    as_of, bound = _as_of(as_of)
    as_of_ns = int(as_of.as_unit("ns").value)
    raw = _read(_query(bound, bound - timedelta(days=SPEND_12M_DAYS) if spend_12m else None), _typed)
    if raw is None:
        return _empty(spend_12m)
    return _features(raw, as_of_ns, spend_12m)


def churn_windows_sql(as_of) -> pd.DataFrame:
    """``preprocessing.churn.trend_windows`` aggregated by the database: churn's line-level half.

    Args:
        as_of: reference timestamp (wall time, as ``customer_features_sql``). "last" is
            ``(as_of - 90d, as_of]``, "prev" is ``(as_of - 180d, as_of - 90d]``, exact timestamps.

    Returns:
        One row per customer with a named line in either window, index ``customer_id`` (str, sorted),
        columns ``WINDOW_COLUMNS``: net spend (float64) and distinct transactions with a line of
        quantity > 0 (int64) per window. Sums are exact decimals until the final cast to float.
    """
    _, bound = _as_of(as_of)
    window = timedelta(days=TREND_WINDOW_DAYS)
    line = PurchaseLine.__table__
    last = line.c.purchased_at > bound - window
    prev = line.c.purchased_at <= bound - window
    bought = line.c.quantity > 0
    per_customer = (
        select(
            line.c.customer_id.label("cid"),
            cast(func.sum(case((last, line.c.amount), else_=0)), Float).label("spend_last_90d"),
            func.count(distinct(case((and_(last, bought), line.c.transaction_ref)))).label("purchases_last_90d"),
            cast(func.sum(case((prev, line.c.amount), else_=0)), Float).label("spend_prev_90d"),
            func.count(distinct(case((and_(prev, bought), line.c.transaction_ref)))).label("purchases_prev_90d"),
        )
        .where(
            and_(line.c.customer_id.isnot(None), line.c.purchased_at <= bound, line.c.purchased_at > bound - 2 * window)
        )
        .group_by(line.c.customer_id)
        .subquery()
    )
    raw = _read(_named(per_customer), _typed_windows)
    dtypes = {col: "float64" if col.startswith("spend") else "int64" for col in WINDOW_COLUMNS}
    return _indexed(raw, dtypes)


def clv_day_totals_sql(as_of) -> pd.DataFrame:
    """Per-customer purchase-day totals for ``preprocessing.clv.rfm_summary_from_day_totals``, by the database.

    Purchase days as ``preprocessing.clv._purchase_days`` counts them: named lines with
    ``amount > 0`` (returns and zero-value lines dropped), summed per customer and calendar day
    (``_day``: the date of the wall-clock timestamp), on days up to and including ``as_of``'s day
    (a later hour of that day counts, as in ``rfm_summary``). Two GROUP BYs in the database — by
    customer and day, then by customer — so one row per customer travels.

    Returns:
        Index ``customer_id`` (str, sorted); ``n_days`` (int64), ``first_day`` / ``last_day``
        (datetime64[ns] midnights), ``total`` and ``first_amount`` (float64: spend over all purchase
        days and on the first one). Customers without a purchase day are absent.
    """
    as_of, _ = _as_of(as_of)
    next_midnight = (as_of.normalize() + pd.Timedelta(days=1)).to_pydatetime()
    line = PurchaseLine.__table__
    day = _day(line.c.purchased_at)
    daily = (
        select(line.c.customer_id.label("cid"), day.label("day"), func.sum(line.c.amount).label("amount"))
        .where(and_(line.c.customer_id.isnot(None), line.c.amount > 0, line.c.purchased_at < next_midnight))
        .group_by(line.c.customer_id, day)
        .subquery()
    )
    ranked = select(daily, func.min(daily.c.day).over(partition_by=daily.c.cid).label("first")).subquery()
    per_customer = (
        select(
            ranked.c.cid,
            func.count().label("n_days"),
            func.min(ranked.c.day).label("first_day"),
            func.max(ranked.c.day).label("last_day"),
            cast(func.sum(ranked.c.amount), Float).label("total"),
            cast(func.sum(case((ranked.c.day == ranked.c.first, ranked.c.amount), else_=0)), Float).label(
                "first_amount"
            ),
        )
        .group_by(ranked.c.cid)
        .subquery()
    )
    raw = _read(_named(per_customer), _typed_day_totals)
    return _indexed(
        raw,
        {
            "n_days": "int64",
            "first_day": "datetime64[ns]",
            "last_day": "datetime64[ns]",
            "total": "float64",
            "first_amount": "float64",
        },
    )


def _as_of(as_of) -> tuple[pd.Timestamp, datetime]:
    """``as_of`` as a naive wall-clock Timestamp, and the bound the SQL compares ``purchased_at`` with."""
    as_of = pd.Timestamp(as_of)
    if as_of.tzinfo is not None:  # compute_features compares the UTC instant with naive wall times
        as_of = as_of.tz_convert("UTC").tz_localize(None)
    # Stored timestamps have whole microseconds, so flooring the bound keeps exactly the same lines
    # (for both ``<=`` and ``>`` comparisons, and after subtracting whole days).
    return as_of, as_of.floor("us").to_pydatetime()


def _read(query, typed) -> pd.DataFrame | None:
    """Stream the aggregated rows in chunks of ``CHUNK`` into one typed frame (None when there are none)."""
    frames = []
    with db.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(query)
        keys = list(result.keys())
        for rows in result.partitions(CHUNK):
            # plain tuples: pandas builds a frame from SQLAlchemy Row objects ~7x slower
            frames.append(typed(pd.DataFrame.from_records([tuple(row) for row in rows], columns=keys)))
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _named(per_customer):
    """Per-customer rows (keyed by the customer row id ``cid``) with the customers' external ids."""
    wanted = [c for c in per_customer.c if c.name != "cid"]
    return select(Customer.external_id.label("customer_id"), *wanted).select_from(
        per_customer.join(Customer.__table__, Customer.id == per_customer.c.cid)
    )


def _indexed(raw: pd.DataFrame | None, dtypes: dict) -> pd.DataFrame:
    """Rows indexed by external customer id (str, sorted like ``load_lines``' categories); empty when None."""
    if raw is None:
        raw = pd.DataFrame(
            {"customer_id": pd.Series(dtype="str"), **{name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()}}
        )
    frame = raw[list(dtypes)].set_axis(pd.Index(raw["customer_id"], dtype="str", name="customer_id"))
    return frame.sort_index()


def _day(column):
    """The calendar day of a naive wall-clock timestamp, in the engine's SQL."""
    if db.engine.dialect.name == "sqlite":
        return func.date(column)  # timestamps are ISO text there; CAST(.. AS DATE) would give the year
    return cast(column, Date)


def _query(bound: datetime, spend_since: datetime | None):
    """One GROUP BY over the lines (by customer row id), joined to the customers for external ids."""
    line = PurchaseLine.__table__
    columns = [
        line.c.customer_id.label("cid"),
        cast(func.sum(line.c.amount), Float).label("monetary"),
        func.count(distinct(line.c.transaction_ref)).label("frequency"),
        cast(func.sum(line.c.quantity), Float).label("total_quantity"),
        func.count(distinct(line.c.product_id)).label("num_unique_products"),
        cast(func.avg(case((line.c.quantity > 0, line.c.unit_price))), Float).label("avg_price_per_unit"),
        func.count(distinct(_day(line.c.purchased_at))).label("store_visit_frequency"),
        func.min(line.c.purchased_at).label("first_purchase"),
        func.max(line.c.purchased_at).label("last_purchase"),
    ]
    if spend_since is not None:
        columns.append(
            cast(func.sum(case((line.c.purchased_at > spend_since, line.c.amount), else_=0)), Float).label("spend_12m")
        )
    per_customer = (
        select(*columns)
        .where(and_(line.c.customer_id.isnot(None), line.c.purchased_at <= bound))
        .group_by(line.c.customer_id)
        .subquery()
    )
    return _named(per_customer)


def _typed(chunk: pd.DataFrame) -> pd.DataFrame:
    """One chunk of aggregated rows with fixed dtypes (NULL money/prices become NaN)."""
    for col in ("monetary", "total_quantity", "avg_price_per_unit", "spend_12m"):
        if col in chunk.columns:
            chunk[col] = pd.to_numeric(chunk[col], errors="coerce").astype("float64")
    for col in ("frequency", "num_unique_products", "store_visit_frequency"):
        chunk[col] = chunk[col].astype("int64")
    for col in ("first_purchase", "last_purchase"):
        chunk[col] = pd.to_datetime(chunk[col]).astype("datetime64[ns]")
    chunk["customer_id"] = chunk["customer_id"].astype("str")
    return chunk


def _typed_windows(chunk: pd.DataFrame) -> pd.DataFrame:
    """One chunk of ``churn_windows_sql`` rows with fixed dtypes (a window without lines sums to 0)."""
    for col in WINDOW_COLUMNS:
        if col.startswith("spend"):
            chunk[col] = pd.to_numeric(chunk[col], errors="coerce").astype("float64").fillna(0.0)
        else:
            chunk[col] = chunk[col].astype("int64")
    chunk["customer_id"] = chunk["customer_id"].astype("str")
    return chunk


def _typed_day_totals(chunk: pd.DataFrame) -> pd.DataFrame:
    """One chunk of ``clv_day_totals_sql`` rows: days as midnight timestamps (SQLite sends 'YYYY-MM-DD' text)."""
    chunk["n_days"] = chunk["n_days"].astype("int64")
    for col in ("first_day", "last_day"):
        chunk[col] = pd.to_datetime(chunk[col]).astype("datetime64[ns]")
    for col in ("total", "first_amount"):
        chunk[col] = pd.to_numeric(chunk[col], errors="coerce").astype("float64")
    chunk["customer_id"] = chunk["customer_id"].astype("str")
    return chunk


def _features(raw: pd.DataFrame, as_of_ns: int, spend_12m: bool) -> pd.DataFrame:
    """Day arithmetic on the aggregated rows, exactly as ``compute_features`` does it."""
    first_ns = raw["first_purchase"].to_numpy().view(np.int64)
    last_ns = raw["last_purchase"].to_numpy().view(np.int64)
    visit_days = raw["store_visit_frequency"].to_numpy()
    first_day = first_ns // _NS_PER_DAY
    last_day = last_ns // _NS_PER_DAY
    as_of_day = as_of_ns // _NS_PER_DAY
    gaps = np.where(visit_days > 1, (last_day - first_day) / np.maximum(visit_days - 1, 1), 0.0)
    frame = pd.DataFrame(
        {
            "monetary": raw["monetary"].fillna(0.0).to_numpy(),  # SUM over no non-NULL values is NULL
            "frequency": raw["frequency"].to_numpy(),
            "total_quantity": raw["total_quantity"].fillna(0.0).to_numpy(),
            "num_unique_products": raw["num_unique_products"].to_numpy(),
            "avg_price_per_unit": raw["avg_price_per_unit"].to_numpy(),
            "store_visit_frequency": visit_days,
            "active_days": (as_of_day - first_day).astype(np.int64),
            "avg_purchase_gap_days": gaps.astype(np.float64),
            "recency": (as_of_day - last_day).astype(np.int64),
            "first_purchase": raw["first_purchase"].to_numpy(),
            "last_purchase": raw["last_purchase"].to_numpy(),
        },
        index=pd.Index(raw["customer_id"], dtype="str", name="customer_id"),
    )
    if spend_12m:
        frame["spend_12m"] = raw["spend_12m"].fillna(0.0).to_numpy()
    # load_lines() makes customer_id a categorical with sorted categories; keep that order.
    return frame.sort_index()


def _empty(spend_12m: bool) -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in _DTYPES.items()})
    if spend_12m:
        frame["spend_12m"] = pd.Series(dtype="float64")
    frame.index = pd.Index([], dtype="str", name="customer_id")
    return frame
