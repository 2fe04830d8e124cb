"""The original system's churn rule, kept as the documented fallback when data are too short to split.

``RuleModel`` is a classifier (so it sits in the same pipeline and is pickled the same way) whose
"probabilities" are two fixed values, not estimates. Pickles saved before the package split name it
``preprocessing.churn.RuleModel``, which the package still re-exports.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from preprocessing.churn.features import FEATURES

RULE_HIGH, RULE_LOW = 0.85, 0.15
"""Probabilities ``RuleModel`` gives to customers the rule flags / does not flag (High / Low band)."""


class RuleModel(ClassifierMixin, BaseEstimator):
    """The original rule as a classifier — the documented fallback when data are too short to split.

    Flagged = ``recency > avg_purchase_gap_days and monetary < median and frequency < median``,
    medians learnt in ``fit``. ``predict_proba`` gives ``RULE_HIGH`` (0.85, High band) to flagged
    customers and ``RULE_LOW`` (0.15, Low band) to the rest: a yes/no rule, not a probability.
    Works on a frame or on the ``FEATURES`` matrix.
    """

    def __init__(self, high: float = RULE_HIGH, low: float = RULE_LOW):
        self.high = high
        self.low = low

    def _columns(self, X):
        if isinstance(X, pd.DataFrame):
            return {
                c: X[c].to_numpy(dtype=float) for c in ("recency", "avg_purchase_gap_days", "monetary", "frequency")
            }
        X = np.asarray(X, dtype=float)
        return {c: X[:, FEATURES.index(c)] for c in ("recency", "avg_purchase_gap_days", "monetary", "frequency")}

    def fit(self, X, y=None):
        """Learn the monetary and frequency medians of the population the rule is applied to."""
        cols = self._columns(X)
        self.monetary_median_ = float(np.median(cols["monetary"]))
        self.frequency_median_ = float(np.median(cols["frequency"]))
        self.classes_ = np.array([0, 1])
        return self

    def conditions(self, X) -> dict[str, np.ndarray]:
        """Each of the rule's three conditions per customer (bool arrays), for reasons."""
        check_is_fitted(self, "monetary_median_")
        c = self._columns(X)
        return {
            "recency": c["recency"] > c["avg_purchase_gap_days"],
            "monetary": c["monetary"] < self.monetary_median_,
            "frequency": c["frequency"] < self.frequency_median_,
        }

    def predict_proba(self, X):
        """Two columns (stay, churn): churn = ``high`` when all three conditions hold, else ``low``."""
        cond = self.conditions(X)
        p = np.where(cond["recency"] & cond["monetary"] & cond["frequency"], self.high, self.low)
        return np.column_stack([1.0 - p, p])

    def predict(self, X):
        """1 when the rule flags the customer."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)


def rule_label(features: pd.DataFrame) -> pd.Series:
    """The original rule (fallback only): 1 when recency > avg gap and monetary and frequency are
    below this population's medians. Not a label to train on — it is what the features already say."""
    flagged = RuleModel().fit(features).predict(features)
    return pd.Series(flagged, index=features.index, name="rule_churn")
