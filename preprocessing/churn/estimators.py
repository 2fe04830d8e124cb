"""The candidate models: a feature-selecting pipeline around a logistic regression or boosted trees.

Every model is ``Pipeline([("features", FeatureSelector()), ("model", estimator)])``; ``_calibrated``
wraps a candidate in out-of-fold calibration. ``FeatureSelector`` and ``signed_log1p`` are pickled
inside ``Models/churn_model.pkl``: pickles saved before the package split name them
``preprocessing.churn.<name>``, which the package still re-exports.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.validation import check_is_fitted

from preprocessing.churn.features import FEATURES

CANDIDATES = ("logistic", "gradient_boosting")


def signed_log1p(x):
    """log1p that keeps the sign, so heavy-tailed money and counts suit a linear model."""
    return np.sign(x) * np.log1p(np.abs(x))


class FeatureSelector(TransformerMixin, BaseEstimator):
    """Pick ``FEATURES`` (in order) from a feature frame; remember the baseline ``explain`` compares to."""

    def __init__(self, columns=tuple(FEATURES)):
        self.columns = columns

    def fit(self, X, y=None):
        """Record ``baseline_``: the medians of the customers who did come back (``y == 0``) in the
        training window — "a typical returning customer" — or of everyone when no label is given."""
        frame = X[list(self.columns)].astype(float)
        if y is not None and (np.asarray(y) == 0).any():
            frame = frame[np.asarray(y) == 0]
        self.baseline_ = frame.median()
        return self

    def transform(self, X):
        """Return the model's input matrix (n_customers x len(columns), float)."""
        check_is_fitted(self, "baseline_")
        return X[list(self.columns)].to_numpy(dtype=np.float64)


def _candidate(name: str, random_state: int):
    if name == "logistic":
        return Pipeline(
            [
                ("log", FunctionTransformer(signed_log1p, feature_names_out="one-to-one")),
                ("scale", StandardScaler()),
                ("clf", LogisticRegression(max_iter=2000)),
            ]
        )
    if name == "gradient_boosting":
        return Pipeline([("clf", HistGradientBoostingClassifier(random_state=random_state))])
    raise ValueError(f"unknown candidate {name!r}")


def _wrap(estimator) -> Pipeline:
    return Pipeline([("features", FeatureSelector()), ("model", estimator)])


def _calibrated(name: str, frame: pd.DataFrame, random_state: int) -> tuple[Pipeline, str]:
    """Fit ``name`` on the whole window with a calibrator fitted on its out-of-fold predictions."""
    y = frame["churned"].to_numpy()
    method = "isotonic" if len(frame) >= 1000 else "sigmoid"
    folds = int(min(5, np.bincount(y, minlength=2).min()))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    est = CalibratedClassifierCV(_candidate(name, random_state), method=method, cv=cv, ensemble=False)
    return _wrap(est).fit(frame, y), method
