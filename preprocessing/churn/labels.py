"""Labelled windows: features as of a cutoff plus whether the customer bought again within the horizon.

The label comes from the future (no purchase in ``(cutoff, cutoff + H]``), never from a rule on the
features, so the model cannot simply relearn the rule. A window too small or too one-sided to
learn from sends training to the rule fallback (``_too_small`` says why, in words).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from preprocessing.churn.features import churn_features

MIN_CUSTOMERS = 50
MIN_PER_CLASS = 10


def label_frame(lines: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int = 90) -> pd.DataFrame:
    """Training rows for one cutoff: features as of ``cutoff`` plus the future ``churned`` label.

    Args:
        lines: canonical purchase lines; they must reach ``cutoff + horizon_days`` (else the label
            would call customers churned only because the data stop), or ``ValueError``.
        cutoff: features use lines dated <= cutoff only.
        horizon_days: H; churned = 1 when the customer has no line with quantity > 0 in
            ``(cutoff, cutoff + H]``.

    Returns:
        ``churn_features`` of the customers with a bought line (quantity > 0) on or before the
        cutoff, plus ``churned`` (int 0/1).
    """
    cutoff = pd.Timestamp(cutoff)
    end = cutoff + pd.Timedelta(days=horizon_days)
    if len(lines) == 0 or lines["purchase_date"].max() < end:
        raise ValueError(f"the data end before {end:%Y-%m-%d}: the {horizon_days}-day horizon is not covered")
    feats = churn_features(lines, cutoff)
    named = lines[lines["customer_id"].notna() & (lines["quantity"] > 0)]
    when = named["purchase_date"]
    buyers = pd.Index(named.loc[when <= cutoff, "customer_id"].astype(str).unique())
    returning = pd.Index(named.loc[(when > cutoff) & (when <= end), "customer_id"].astype(str).unique())
    feats = feats[feats.index.isin(buyers)].copy()
    feats["churned"] = (~feats.index.isin(returning)).astype(np.int64)
    return feats


def _balance(frame: pd.DataFrame) -> dict:
    y = frame["churned"].to_numpy()
    return {"n": int(len(y)), "churned": int(y.sum()), "churn_rate": float(y.mean()) if len(y) else None}


def _too_small(frame: pd.DataFrame, what: str) -> str | None:
    counts = np.bincount(frame["churned"].to_numpy(), minlength=2)
    if len(frame) < MIN_CUSTOMERS:
        return f"only {len(frame)} customers in the {what} window (need {MIN_CUSTOMERS})"
    if counts.min() < MIN_PER_CLASS:
        return (
            f"the {what} window has {counts[1]} churned and {counts[0]} returning customers "
            f"(need {MIN_PER_CLASS} of each)"
        )
    return None
