"""Scoring: each customer's churn probability from a fitted model, and the risk band it falls in.

The band cut-offs are arguments because the store's settings choose them (default High > 0.7,
Low < 0.3); the probability is that of no purchase within the model's horizon.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def score_churn(model, features: pd.DataFrame) -> pd.Series:
    """P(no purchase within the horizon) per customer, from ``churn_features`` as of the reference."""
    p = model.predict_proba(features)[:, 1] if len(features) else np.array([], dtype=float)
    return pd.Series(p, index=features.index, name="churn_probability")


def band(p, high: float = 0.7, low: float = 0.3) -> pd.Series:
    """Risk band per probability: "High" when p > high, "Low" when p < low, else "Medium" (ends
    included); missing p gives a missing band."""
    s = p if isinstance(p, pd.Series) else pd.Series(p)
    v = s.to_numpy(dtype=float)
    out = np.where(v > high, "High", np.where(v < low, "Low", "Medium")).astype(object)
    out[np.isnan(v)] = None
    return pd.Series(out, index=s.index, name="churn_band", dtype=object)
