"""Churn risk: leak-free labels, a temporal-holdout model, bands and plain-English reasons.

Why it is built this way: the original system labelled a customer "churned" with a rule on the same
features it then trained on, so the model only relearned the rule. Here the label comes from the
future instead:

- **Label** (``label_frame``): features use purchase lines on or before a cutoff only; a customer is
  ``churned = 1`` when they make no purchase (a line with quantity > 0) in ``(cutoff, cutoff + H]``.
  Only customers who had bought on or before the cutoff are in that cutoff's sample.
- **Training** (``train_churn``): with the reference date R (default: the last purchase in the data)
  and horizon H (default 90 days), candidates are fitted at cutoff R - 2H and compared on the
  **temporal holdout** at cutoff R - H (ROC-AUC, PR-AUC, Brier score, 10-bin calibration table).
  The original rule is scored on the same holdout for comparison.
- **Selection**: highest holdout PR-AUC (average precision for the churned class — the at-risk list
  is a ranking we act on from the top), ties broken by ROC-AUC, then by the simpler model.
- **Calibration without leaking**: the chosen model is refitted on the latest labelled window
  (cutoff R - H) inside ``CalibratedClassifierCV(cv=5, ensemble=False)``: the base model is fitted on
  the whole window and the calibrator (isotonic from 1,000 customers, sigmoid below) on out-of-fold
  predictions, so the calibrator never sees scores of rows the model was fitted on. The same
  procedure run at R - 2H and scored on the R - H holdout gives the honest ``"calibrated"`` metrics.
- **Fallback**: when the data are too short for this split (less than H days of history before
  R - 2H, fewer than ``MIN_CUSTOMERS`` customers in a window, or fewer than ``MIN_PER_CLASS`` of
  either class) the model is ``RuleModel`` — the original rule, documented as such.

Every model is a ``sklearn.pipeline.Pipeline``: a ``FeatureSelector`` step (picks ``FEATURES`` from a
feature frame and remembers the baseline ``explain`` compares with) followed by the estimator.

The package, by meaning: ``features`` (model inputs and trend windows), ``labels`` (labelled windows
and whether they can be learnt from), ``estimators`` (candidates, ``FeatureSelector``, calibration),
``rule`` (``RuleModel``, the fallback), ``training`` (selection and metrics), ``scoring``
(probabilities and bands) and ``reasons`` (``explain``). Callers import the package
(``from preprocessing import churn``); a test that replaces a function patches the module that calls it.

Pickles: ``Models/churn_model.pkl`` holds the pipeline, so it names ``FeatureSelector``,
``signed_log1p`` and ``RuleModel`` by module. Models saved before the split say
``preprocessing.churn``; newer ones say ``preprocessing.churn.estimators`` / ``.rule``. Both paths
must stay importable for old models to load: keep the re-exports below.
"""

# Private helpers imported from the package path by bench/churn.py and tests/preprocessing/test_churn.py.
from preprocessing.churn.estimators import CANDIDATES, FeatureSelector, _candidate, _wrap, signed_log1p  # noqa: F401
from preprocessing.churn.features import (
    BASIC_FEATURES,
    FEATURES,
    TREND_FEATURES,
    TREND_WINDOW_DAYS,
    WINDOW_COLUMNS,
    churn_features,
    churn_features_from,
    trend_windows,
)
from preprocessing.churn.labels import MIN_CUSTOMERS, MIN_PER_CLASS, label_frame
from preprocessing.churn.reasons import (
    REASON_GROUPS,
    _contributions,  # noqa: F401
    explain,
)
from preprocessing.churn.rule import RULE_HIGH, RULE_LOW, RuleModel, rule_label
from preprocessing.churn.scoring import band, score_churn
from preprocessing.churn.training import (
    ChurnTraining,
    calibration_table,
    holdout_metrics,
    train_churn,
    train_churn_frames,
)

__all__ = [
    "BASIC_FEATURES",
    "CANDIDATES",
    "FEATURES",
    "MIN_CUSTOMERS",
    "MIN_PER_CLASS",
    "REASON_GROUPS",
    "RULE_HIGH",
    "RULE_LOW",
    "TREND_FEATURES",
    "TREND_WINDOW_DAYS",
    "WINDOW_COLUMNS",
    "ChurnTraining",
    "FeatureSelector",
    "RuleModel",
    "band",
    "calibration_table",
    "churn_features",
    "churn_features_from",
    "explain",
    "holdout_metrics",
    "label_frame",
    "rule_label",
    "score_churn",
    "signed_log1p",
    "train_churn",
    "train_churn_frames",
    "trend_windows",
]
