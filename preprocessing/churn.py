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
All classes live in this module, so pickles load wherever ``preprocessing.churn`` imports.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.validation import check_is_fitted

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

MIN_CUSTOMERS = 50
MIN_PER_CLASS = 10
RULE_HIGH, RULE_LOW = 0.85, 0.15
"""Probabilities ``RuleModel`` gives to customers the rule flags / does not flag (High / Low band)."""

CANDIDATES = ("logistic", "gradient_boosting")


# --------------------------------------------------------------------------------------- features
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
    windows itself (``portal.services.aggregates.churn_windows_sql``) and only the per-customer
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


# ----------------------------------------------------------------------------------- estimators
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
            return {c: X[c].to_numpy(dtype=float) for c in ("recency", "avg_purchase_gap_days", "monetary", "frequency")}
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


# ------------------------------------------------------------------------------------- training
def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Observed churn rate per predicted-probability bin (equal-width bins on [0, 1]); JSON-ready."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    n = np.bincount(idx, minlength=bins)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    return [
        {
            "bin_low": round(float(edges[i]), 2),
            "bin_high": round(float(edges[i + 1]), 2),
            "n": int(n[i]),
            "mean_predicted": float(sum_p[i] / n[i]) if n[i] else None,
            "observed_rate": float(sum_y[i] / n[i]) if n[i] else None,
        }
        for i in range(bins)
    ]


def holdout_metrics(y: np.ndarray, p: np.ndarray) -> dict:
    """ROC-AUC, PR-AUC (average precision, churned = positive), Brier score and calibration table."""
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=float)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "n": int(len(y)),
        "churn_rate": float(y.mean()),
        "calibration": calibration_table(y, p),
    }


def _balance(frame: pd.DataFrame) -> dict:
    y = frame["churned"].to_numpy()
    return {"n": int(len(y)), "churned": int(y.sum()), "churn_rate": float(y.mean()) if len(y) else None}


@dataclass
class ChurnTraining:
    """What ``train_churn`` produced: the model to pickle and everything its manifest entry needs."""

    model: Pipeline  # FeatureSelector + estimator; predict_proba(features)[:, 1] = P(churn within H)
    fallback: bool  # True: the model is RuleModel (data too short for a temporal split)
    reason: str  # why this model (selection or fallback), in words for the page and manifest
    chosen: str  # "logistic" | "gradient_boosting" | "rule"
    horizon_days: int
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    metrics: dict[str, dict] = field(default_factory=dict)  # per candidate, "rule", "calibrated"
    class_balance: dict[str, dict] = field(default_factory=dict)  # "train" | "holdout" | "final"
    cutoffs: dict[str, pd.Timestamp] = field(default_factory=dict)  # "train" | "holdout" | "reference"
    selection_metric: str = "pr_auc"
    calibration_method: str | None = None

    def manifest(self) -> dict:
        """Everything but the model, JSON-ready (timestamps as ISO strings)."""
        return {
            "fallback": self.fallback,
            "reason": self.reason,
            "chosen": self.chosen,
            "horizon_days": self.horizon_days,
            "features": list(self.features),
            "metrics": self.metrics,
            "class_balance": self.class_balance,
            "cutoffs": {k: v.isoformat() for k, v in self.cutoffs.items()},
            "selection_metric": self.selection_metric,
            "calibration_method": self.calibration_method,
        }


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


def train_churn_frames(
    train: pd.DataFrame, holdout: pd.DataFrame, latest: pd.DataFrame, *, horizon_days: int = 90,
    random_state: int = 0, check_calibration: bool = True, candidates: tuple[str, ...] = CANDIDATES,
) -> ChurnTraining:
    """Fit candidates on ``train``, compare them (and the rule) on ``holdout``, refit the best on
    ``latest`` with out-of-fold calibration. Frames are ``label_frame`` outputs (``FEATURES`` +
    ``churned``); ``latest`` is usually ``holdout`` itself — the newest labelled window.

    ``check_calibration`` also runs the calibration procedure at the train window and scores it on
    the holdout (``metrics["calibrated"]``) — honest calibration numbers at the cost of one more fit.
    ``candidates`` narrows the comparison (a subset of ``CANDIDATES``).
    """
    y_train, y_hold = train["churned"].to_numpy(), holdout["churned"].to_numpy()
    metrics: dict[str, dict] = {}
    for name in candidates:
        fitted = _wrap(_candidate(name, random_state)).fit(train, y_train)
        metrics[name] = holdout_metrics(y_hold, fitted.predict_proba(holdout)[:, 1])
    rule = _wrap(RuleModel()).fit(holdout)  # the original system's medians: those of the scored population
    metrics["rule"] = holdout_metrics(y_hold, rule.predict_proba(holdout)[:, 1])

    # Best PR-AUC, then ROC-AUC; CANDIDATES order (simplest first) breaks exact ties.
    chosen = max(candidates, key=lambda c: (metrics[c]["pr_auc"], metrics[c]["roc_auc"], -CANDIDATES.index(c)))
    if check_calibration:
        check, _ = _calibrated(chosen, train, random_state)
        metrics["calibrated"] = holdout_metrics(y_hold, check.predict_proba(holdout)[:, 1])
    model, method = _calibrated(chosen, latest, random_state)
    reason = (
        f"{chosen} had the best holdout PR-AUC ({metrics[chosen]['pr_auc']:.3f}; "
        + ", ".join(f"{c} {metrics[c]['pr_auc']:.3f}" for c in (*candidates, "rule") if c != chosen)
        + f"); refitted on the latest window with {method} calibration"
    )
    return ChurnTraining(
        model=model, fallback=False, reason=reason, chosen=chosen, horizon_days=horizon_days,
        metrics=metrics, calibration_method=method,
        class_balance={"train": _balance(train), "holdout": _balance(holdout), "final": _balance(latest)},
    )


def train_churn(
    lines: pd.DataFrame, reference: pd.Timestamp | None = None, horizon_days: int = 90, random_state: int = 0
) -> ChurnTraining:
    """Train the churn model on a temporal split, or fall back to the rule when the data are too short.

    Args:
        lines: canonical purchase lines.
        reference: the scoring date R (default: the latest ``purchase_date``). Train cutoff R - 2H,
            holdout / final cutoff R - H; score customers with ``churn_features(lines, R)``.
        horizon_days: H, days after a cutoff in which a purchase means "not churned".
        random_state: seeds the tree model and the calibration folds (results are reproducible).

    Returns:
        ``ChurnTraining``; ``fallback=True`` with a ``RuleModel`` pipeline (fitted on the features
        as of R) and the reason when the split is impossible.
    """
    reference = pd.Timestamp(lines["purchase_date"].max() if reference is None else reference)
    H = pd.Timedelta(days=horizon_days)
    cutoffs = {"train": reference - 2 * H, "holdout": reference - H, "reference": reference}
    named = lines[lines["customer_id"].notna()]
    start = named["purchase_date"].min() if len(named) else pd.NaT
    why = None
    if pd.isna(start) or start > cutoffs["train"] - H:
        have = 0 if pd.isna(start) else max((reference - start).days, 0)
        why = f"the data cover {have} days; a time split needs {3 * horizon_days} (3 x the {horizon_days}-day horizon)"
    else:
        train = label_frame(lines, cutoffs["train"], horizon_days)
        holdout = label_frame(lines, cutoffs["holdout"], horizon_days)
        why = _too_small(train, "training") or _too_small(holdout, "holdout")
    if why is None:
        result = train_churn_frames(train, holdout, holdout, horizon_days=horizon_days, random_state=random_state)
        result.cutoffs = cutoffs
        return result
    now = churn_features(lines, reference)
    return ChurnTraining(
        model=_wrap(RuleModel()).fit(now), fallback=True, chosen="rule", horizon_days=horizon_days,
        reason=f"fallback to the original rule: {why}", cutoffs={"reference": reference},
        selection_metric="none",
    )


# -------------------------------------------------------------------------------------- scoring
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


# -------------------------------------------------------------------------------------- reasons
REASON_GROUPS = {
    "recency": ["recency", "recency_gap_ratio"],
    "spend_trend": ["spend_last_90d", "spend_prev_90d", "spend_trend"],
    "recent_purchases": ["purchases_last_90d", "purchases_prev_90d"],
    "frequency": ["frequency", "store_visit_frequency", "single_visit"],
    "monetary": ["monetary", "total_quantity", "avg_price_per_unit"],
    "variety": ["num_unique_products"],
    "tenure": ["active_days"],
    "gap": ["avg_purchase_gap_days"],
}
"""Features explained together (one sentence each); the order breaks ties between equal factors."""


def _num(a: np.ndarray, decimals: int = 0) -> np.ndarray:
    """Numbers as text (object array) with a fixed number of decimals, without per-value Python."""
    scaled = np.round(np.abs(a) * 10**decimals).astype(np.int64)
    text = pd.Series(scaled // 10**decimals).astype(str).to_numpy(dtype=object)
    if decimals:
        frac = pd.Series(scaled % 10**decimals + 10**decimals).astype(str).str.slice(1).to_numpy(dtype=object)
        text = text + "." + frac
    return np.where((a < 0) & (scaled > 0), "-", "").astype(object) + text


def _count(a: np.ndarray, noun: str) -> np.ndarray:
    return np.where(np.round(a) == 1, f"1 {noun}", _num(a) + f" {noun}s")


def _say_recency(c: dict, baseline: pd.Series) -> np.ndarray:
    r, gap, ratio = c["recency"], c["avg_purchase_gap_days"], c["recency_gap_ratio"]
    ago = np.where(r < 0.5, "today", _count(r, "day") + " ago")
    times = np.where(ratio < 2, _num(ratio, 1), _num(ratio)) + "× their usual gap"
    return np.where(
        c["single_visit"] == 1, "only one visit, " + ago,
        np.where(ratio > 1, "no visit for " + _count(r, "day") + ", " + times,
                 "last visit " + ago + ", within their usual gap of " + _count(gap, "day")),
    )


def _say_spend_trend(c: dict, baseline: pd.Series) -> np.ndarray:
    last, prev = c["spend_last_90d"], c["spend_prev_90d"]
    pct = np.round(np.divide(last - prev, prev, out=np.zeros(len(last)), where=prev > 0) * 100)
    change = np.where(pct < 0, "spend down " + _num(-pct) + " % vs previous quarter",
                      np.where(pct > 0, "spend up " + _num(pct) + " % vs previous quarter",
                               "spend steady vs previous quarter"))
    return np.where(
        prev > 0,
        np.where(last <= 0, "no spend in the last quarter (" + _num(prev, 2) + " the quarter before)", change),
        np.where(last > 0, "spent " + _num(last, 2) + " in the last quarter, nothing the quarter before",
                 "no spend in the last two quarters"),
    )


def _say_recent_purchases(c: dict, baseline: pd.Series) -> np.ndarray:
    a, b = c["purchases_last_90d"], c["purchases_prev_90d"]
    return np.where(
        (a == 0) & (b == 0), "no purchases in the last two quarters",
        np.where(a == 0, "no purchases in the last quarter", _count(a, "purchase") + " in the last quarter")
        + " (" + _num(b) + " the quarter before)",
    )


def _only(c: dict, baseline: pd.Series, name: str) -> np.ndarray:
    return np.where(c[name] < baseline[name], "only ", "").astype(object)


def _say_frequency(c: dict, baseline: pd.Series) -> np.ndarray:
    return _only(c, baseline, "frequency") + _count(c["frequency"], "purchase") + " in total"


def _say_monetary(c: dict, baseline: pd.Series) -> np.ndarray:
    return _only(c, baseline, "monetary") + _num(c["monetary"], 2) + " spent in total"


def _say_variety(c: dict, baseline: pd.Series) -> np.ndarray:
    n = c["num_unique_products"]
    return "bought " + _only(c, baseline, "num_unique_products") + _count(n, "different product")


def _say_tenure(c: dict, baseline: pd.Series) -> np.ndarray:
    t = c["active_days"]
    return np.where(t < TREND_WINDOW_DAYS, "new customer: first purchase " + _count(t, "day") + " ago",
                    "customer for " + _count(t, "day"))


def _say_gap(c: dict, baseline: pd.Series) -> np.ndarray:
    return np.where(c["single_visit"] == 1, "no buying rhythm yet (bought on one day only)",
                    "usually buys every " + _count(c["avg_purchase_gap_days"], "day"))


_SAY = {
    "recency": _say_recency,
    "spend_trend": _say_spend_trend,
    "recent_purchases": _say_recent_purchases,
    "frequency": _say_frequency,
    "monetary": _say_monetary,
    "variety": _say_variety,
    "tenure": _say_tenure,
    "gap": _say_gap,
}
"""One sentence per reason group, from the customers' feature values (vectorised over customers);
"only" marks values below the baseline (a typical returning customer)."""


def _contributions(model: Pipeline, features: pd.DataFrame) -> np.ndarray:
    """Each reason group's push on the churn log-odds per customer (n x groups; > 0 raises risk)."""
    selector, est = model.named_steps["features"], model.steps[-1][1]
    X = selector.transform(features)
    groups = [[FEATURES.index(c) for c in cols] for cols in REASON_GROUPS.values()]
    names = list(REASON_GROUPS)
    if isinstance(est, RuleModel):
        # The rule has no weights: each condition it checks counts +1 when met, -1 when not.
        out = np.zeros((len(X), len(groups)))
        for key, met in est.conditions(X).items():
            out[:, names.index(key)] = np.where(met, 1.0, -1.0)
        return out
    # Calibration is monotone, so the base model's log-odds carry the direction of every factor.
    inner = est.calibrated_classifiers_[0].estimator if isinstance(est, CalibratedClassifierCV) else est
    last = inner.steps[-1][1] if isinstance(inner, Pipeline) else inner
    if isinstance(last, LogisticRegression):
        # Coefficient x standardised value: the log-odds each feature adds vs the average training customer.
        z = inner[:-1].transform(X)
        per_feature = z * last.coef_[0]
        return np.column_stack([per_feature[:, g].sum(axis=1) for g in groups])
    # Any other model: how much the log-odds fall when the group's features are set to those of a
    # typical returning customer (one vectorised predict per group) — cheap and model-agnostic.
    base = inner.decision_function(X)
    med = selector.baseline_.to_numpy(dtype=float)
    out = np.empty((len(X), len(groups)))
    for j, g in enumerate(groups):
        Xg = X.copy()
        Xg[:, g] = med[g]
        out[:, j] = base - inner.decision_function(Xg)
    return out


def explain(model: Pipeline, features: pd.DataFrame, top: int = 3, high: float = 0.7) -> pd.DataFrame:
    """The top factors behind each customer's churn score, in plain words.

    For customers in the High band (p > ``high``) only factors that push the risk up are listed;
    for the others the strongest factors either way. Factors are ranked by their push on the
    log-odds (logistic: coefficient x standardised value; tree model: change when the factor's
    features are replaced by those of a typical returning customer of the training window, i.e. the
    medians of the customers who came back; rule: the conditions it checked); ties keep the
    ``REASON_GROUPS`` order, so the same input always gives the same reasons.

    Args:
        model: a pipeline from ``train_churn``; features: ``churn_features`` rows to explain.

    Returns:
        Index ``customer_id``; columns ``reason_1`` .. ``reason_<top>`` (str, None when fewer apply).
    """
    columns = [f"reason_{i + 1}" for i in range(top)]
    if len(features) == 0:
        return pd.DataFrame(columns=columns, index=features.index, dtype=object)
    contrib = np.round(_contributions(model, features), 9)
    is_high = (model.predict_proba(features)[:, 1] > high)[:, None]
    order = np.argsort(np.where(is_high, -contrib, -np.abs(contrib)), axis=1, kind="stable")[:, :top]
    chosen = np.take_along_axis(contrib, order, axis=1)
    keep = np.where(is_high, chosen > 0, chosen != 0)
    # Render only the sentences that are shown: one vectorised pass per group over its customers.
    values = {c: features[c].to_numpy(dtype=float) for c in FEATURES}
    baseline = model.named_steps["features"].baseline_
    text = np.full(order.shape, None, dtype=object)
    for j, group in enumerate(REASON_GROUPS):
        shown = keep & (order == j)
        rows = shown.any(axis=1)
        if rows.any():
            sentence = np.empty(len(order), dtype=object)
            sentence[rows] = _SAY[group]({c: v[rows] for c, v in values.items()}, baseline)
            text = np.where(shown, sentence[:, None], text)
    if text.shape[1] < top:
        text = np.hstack([text, np.full((len(text), top - text.shape[1]), None, dtype=object)])
    return pd.DataFrame(text, index=features.index, columns=columns, dtype=object)
