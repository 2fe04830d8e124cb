"""The churn model's inputs: ``compute_features`` plus spend and purchase trends over two quarters.

Everything is computed from purchase lines on or before a reference time (a cutoff when training,
the scoring date when scoring), so no feature can see the future it is asked to predict. The
line-level half (``trend_windows``) is kept apart so a database can aggregate the same windows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from preprocessing.features import compute_features

TREND_WINDOW_DAYS = 90
"""Length of the "last quarter" and "previous quarter" windows of the trend features (days)."""

BASIC_FEATURES = [
    "recency",
    "frequency",
    "monetary",
    "total_quantity",
    "num_unique_products",
    "avg_price_per_unit",
    "store_visit_frequency",
    "active_days",
    "avg_purchase_gap_days",
]
TREND_FEATURES = [
    "purchases_last_90d",  # distinct transactions with a bought line in (as_of - 90d, as_of]
    "purchases_prev_90d",  # the same in (as_of - 180d, as_of - 90d]
    "spend_last_90d",  # net total_amount in (as_of - 90d, as_of]
    "spend_prev_90d",  # net total_amount in (as_of - 180d, as_of - 90d]
    "spend_trend",  # (last - prev) / (|last| + |prev|), in [-1, 1]; 0 when both are 0
    "recency_gap_ratio",  # recency / avg_purchase_gap_days; 0 for single-day customers
    "single_visit",  # 1 when the customer bought on one day only (no usual gap known)
]
FEATURES = BASIC_FEATURES + TREND_FEATURES
"""The model's inputs, in order: ``compute_features`` columns plus the churn-specific trend columns."""


def churn_features(lines: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Model inputs per customer from purchase lines on or before ``as_of`` (later lines are ignored).

    Args:
        lines: canonical purchase lines (see ``preprocessing.features``).
        as_of: the cutoff / reference timestamp.

    Returns:
        ``compute_features`` columns (index ``customer_id``) plus ``TREND_FEATURES``; NaN-free in
        ``FEATURES`` (``avg_price_per_unit`` of a returns-only customer becomes 0). Money in the
        store's currency, days as whole calendar days.
    """
    as_of = pd.Timestamp(as_of)
    past = lines[lines["purchase_date"] <= as_of]
    return churn_features_from(compute_features(past, as_of=as_of), trend_windows(past, as_of))


WINDOW_COLUMNS = ["spend_last_90d", "purchases_last_90d", "spend_prev_90d", "purchases_prev_90d"]
"""The per-customer window sums ``trend_windows`` gives (and the database can give instead)."""


def trend_windows(lines: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per-customer spend and purchases in the last and the previous ``TREND_WINDOW_DAYS`` before ``as_of``.

    The line-level half of ``churn_features``, kept apart so a database can aggregate the same
    windows itself (``portal.services.scores.aggregates.churn_windows_sql``) and only the per-customer
    rows reach ``churn_features_from``.

    Args:
        lines: canonical purchase lines; anonymous lines and lines after ``as_of`` are ignored.
        as_of: the reference timestamp. "last" is ``(as_of - 90d, as_of]``, "prev" is
            ``(as_of - 180d, as_of - 90d]`` (exact timestamps, not calendar days).

    Returns:
        Index ``customer_id`` (str): the customers with a line in either window. Columns
        ``WINDOW_COLUMNS``: ``spend_*`` net ``total_amount`` (float, returns subtract) and
        ``purchases_*`` distinct transactions with a line of quantity > 0 (int64); 0 for a window
        the customer has no such line in.
    """
    as_of = pd.Timestamp(as_of)
    window = pd.Timedelta(days=TREND_WINDOW_DAYS)
    when = lines["purchase_date"]
    known = lines[lines["customer_id"].notna() & (when <= as_of) & (when > as_of - 2 * window)]
    if 0 < len(known) <= SMALL_LINES:
        return _trend_windows_small(known, as_of - window)
    when = known["purchase_date"]
    parts = {"last": known[when > as_of - window], "prev": known[when <= as_of - window]}
    sums = {}
    for name, part in parts.items():
        cust = part["customer_id"].astype(str)
        bought = part["quantity"].to_numpy() > 0
        sums[f"spend_{name}_90d"] = part["total_amount"].groupby(cust, sort=False).sum()
        sums[f"purchases_{name}_90d"] = part.loc[bought, "transaction_id"].groupby(cust[bought], sort=False).nunique()
    index = sums["spend_last_90d"].index.union(sums["spend_prev_90d"].index)
    return pd.DataFrame(
        {
            col: sums[col].reindex(index, fill_value=0).astype(float if col.startswith("spend") else np.int64)
            for col in WINDOW_COLUMNS
        },
        index=index.rename("customer_id"),
    )


SMALL_LINES = 100_000
"""Up to this many lines in the windows ``trend_windows`` sums with numpy (``_trend_windows_small``):
pandas' four groupbys cost ~10 ms however few the lines (an incremental rescore of one customer)."""


def _trend_windows_small(known: pd.DataFrame, split: pd.Timestamp) -> pd.DataFrame:
    """``trend_windows``' frame from its window lines (named, in the 180 days) with bincounts: the same index
    (sorted ids as str), columns and dtypes; spend equal up to rounding. ``split``: as_of - 90 days."""
    customer = known["customer_id"].astype(str)
    codes, uniques = pd.factorize(customer, sort=True)
    k = len(uniques)
    last = (known["purchase_date"] > split).to_numpy()
    amount = known["total_amount"].to_numpy(dtype=float)
    bought = known["quantity"].to_numpy() > 0
    tx_codes, tx_uniques = pd.factorize(known["transaction_id"])
    columns = {}
    for name, part in (("last", last), ("prev", ~last)):
        columns[f"spend_{name}_90d"] = np.bincount(codes[part], weights=amount[part], minlength=k).astype(float)
        pairs = np.unique(codes[part & bought].astype(np.int64) * len(tx_uniques) + tx_codes[part & bought])
        columns[f"purchases_{name}_90d"] = np.bincount(pairs // len(tx_uniques), minlength=k).astype(np.int64)
    return pd.DataFrame({c: columns[c] for c in WINDOW_COLUMNS}, index=pd.Index(uniques, name="customer_id"))


def churn_features_from(features: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """``churn_features`` from per-customer tables instead of lines: the feature table and the windows.

    Args:
        features: ``compute_features`` as of the reference timestamp (not modified).
        windows: ``trend_windows`` as of the same timestamp (or the database's equivalent);
            customers missing from it had no line in either window (all four sums 0).

    Returns:
        The ``churn_features`` frame: ``features``' rows and columns, then ``TREND_FEATURES``.
    """
    feats = features.copy()
    feats["avg_price_per_unit"] = feats["avg_price_per_unit"].fillna(0.0)
    for col in WINDOW_COLUMNS:
        if col.startswith("spend"):
            feats[col] = windows[col].reindex(feats.index, fill_value=0.0).astype(float).to_numpy()
        else:
            feats[col] = windows[col].reindex(feats.index, fill_value=0).astype(np.int64).to_numpy()

    s_last, s_prev = feats["spend_last_90d"].to_numpy(), feats["spend_prev_90d"].to_numpy()
    denom = np.abs(s_last) + np.abs(s_prev)
    feats["spend_trend"] = np.divide(s_last - s_prev, denom, out=np.zeros(len(feats)), where=denom > 0)
    gap = feats["avg_purchase_gap_days"].to_numpy(dtype=float)
    multi = (feats["store_visit_frequency"].to_numpy() > 1) & (gap > 0)
    feats["recency_gap_ratio"] = np.divide(
        feats["recency"].to_numpy(dtype=float), gap, out=np.zeros(len(feats)), where=multi
    )
    feats["single_visit"] = (~multi).astype(np.int64)
    return feats
