"""Lifecycle status: one word per customer (New, Active, At risk, Lapsing, Lost) from features and models.

The rules, in the order they are checked (the first that holds wins). "Usual gap" is the customer's
mean gap between purchase days (``avg_purchase_gap_days``); a customer who bought on one day only has
none, and only the day floors apply to them. "Idle" is ``recency``, days since the last purchase.

1. **Lost** — idle longer than max(``lost_gaps`` x usual gap, ``lost_floor_days``) (default 3 x, 365
   days) **and** a chance of buying again within 12 months (``p_return_12m``) below
   ``lost_return_chance`` (default 0.2; when that chance is unknown the idle rule alone decides). Past
   the point where an offer is sensible: leave them out of campaigns. This is not the same as High
   churn risk, which only says "no purchase expected in the next 90 days".
2. **Lapsing** — idle longer than max(``lapsing_gaps`` x usual gap, ``lapsing_floor_days``) (default
   2 x, 180 days): clearly overdue but not gone; a win-back offer.
3. **New** — first purchase at most ``new_days`` ago (default 90): a welcome, not a win-back.
4. **At risk** — idle longer than max(``at_risk_gaps`` x usual gap, ``at_risk_floor_days``) (default
   1.5 x, 60 days), or churn probability above ``high_churn`` (default 0.7, the High band): a nudge.
5. **Active** — everyone else: buying at their usual rhythm.

Columns read: ``recency``, ``avg_purchase_gap_days``, ``store_visit_frequency``, ``active_days`` (days,
as ``compute_features`` gives them) and, when present, ``p_return_12m`` and ``churn_probability``
(``preprocessing.coherence.customer_picture`` gives the consistent pair). Missing values in the
optional columns mean "unknown": that part of a rule is skipped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STATUSES = ("New", "Active", "At risk", "Lapsing", "Lost")


def lifecycle_status(
    frame: pd.DataFrame,
    *,
    new_days: float = 90,
    at_risk_gaps: float = 1.5,
    at_risk_floor_days: float = 60,
    lapsing_gaps: float = 2.0,
    lapsing_floor_days: float = 180,
    lost_gaps: float = 3.0,
    lost_floor_days: float = 365,
    lost_return_chance: float = 0.2,
    high_churn: float = 0.7,
) -> pd.Series:
    """Status per customer by the rules in the module docstring (vectorised).

    Returns:
        Series named ``lifecycle`` indexed like ``frame``, categorical with categories ``STATUSES``.
    """
    idle = frame["recency"].to_numpy(dtype=float)
    repeat = frame["store_visit_frequency"].to_numpy(dtype=float) > 1
    gap = np.where(repeat, frame["avg_purchase_gap_days"].to_numpy(dtype=float), 0.0)  # 0: only floors apply
    returning = frame["p_return_12m"].to_numpy(dtype=float) if "p_return_12m" in frame else np.full(len(frame), np.nan)
    churn = (
        frame["churn_probability"].to_numpy(dtype=float)
        if "churn_probability" in frame
        else np.full(len(frame), np.nan)
    )
    with np.errstate(invalid="ignore"):
        lost = (idle > np.maximum(lost_gaps * gap, lost_floor_days)) & ~(returning >= lost_return_chance)
        lapsing = idle > np.maximum(lapsing_gaps * gap, lapsing_floor_days)
        new = frame["active_days"].to_numpy(dtype=float) <= new_days
        at_risk = (idle > np.maximum(at_risk_gaps * gap, at_risk_floor_days)) | (churn > high_churn)
    status = np.select([lost, lapsing, new, at_risk], ["Lost", "Lapsing", "New", "At risk"], "Active")
    return pd.Series(pd.Categorical(status, categories=STATUSES), index=frame.index, name="lifecycle")
