"""Reasons: the top factors behind each churn score, as sentences a store manager can act on.

Factors are groups of features (``REASON_GROUPS``) ranked by their push on the churn log-odds,
computed in the way that suits the model (logistic coefficients, a what-if against a typical
returning customer for trees, the checked conditions for the rule); every sentence is rendered
vectorised over the customers that show it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from preprocessing.churn.features import FEATURES, TREND_WINDOW_DAYS
from preprocessing.churn.rule import RuleModel

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
        c["single_visit"] == 1,
        "only one visit, " + ago,
        np.where(
            ratio > 1,
            "no visit for " + _count(r, "day") + ", " + times,
            "last visit " + ago + ", within their usual gap of " + _count(gap, "day"),
        ),
    )


def _say_spend_trend(c: dict, baseline: pd.Series) -> np.ndarray:
    last, prev = c["spend_last_90d"], c["spend_prev_90d"]
    pct = np.round(np.divide(last - prev, prev, out=np.zeros(len(last)), where=prev > 0) * 100)
    change = np.where(
        pct < 0,
        "spend down " + _num(-pct) + " % vs previous quarter",
        np.where(pct > 0, "spend up " + _num(pct) + " % vs previous quarter", "spend steady vs previous quarter"),
    )
    return np.where(
        prev > 0,
        np.where(last <= 0, "no spend in the last quarter (" + _num(prev, 2) + " the quarter before)", change),
        np.where(
            last > 0,
            "spent " + _num(last, 2) + " in the last quarter, nothing the quarter before",
            "no spend in the last two quarters",
        ),
    )


def _say_recent_purchases(c: dict, baseline: pd.Series) -> np.ndarray:
    a, b = c["purchases_last_90d"], c["purchases_prev_90d"]
    return np.where(
        (a == 0) & (b == 0),
        "no purchases in the last two quarters",
        np.where(a == 0, "no purchases in the last quarter", _count(a, "purchase") + " in the last quarter")
        + " ("
        + _num(b)
        + " the quarter before)",
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
    return np.where(
        t < TREND_WINDOW_DAYS,
        "new customer: first purchase " + _count(t, "day") + " ago",
        "customer for " + _count(t, "day"),
    )


def _say_gap(c: dict, baseline: pd.Series) -> np.ndarray:
    return np.where(
        c["single_visit"] == 1,
        "no buying rhythm yet (bought on one day only)",
        "usually buys every " + _count(c["avg_purchase_gap_days"], "day"),
    )


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


STACK_ROWS = 20_000  # customers per stacked prediction in ``_contributions``


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
    # typical returning customer — cheap and model-agnostic. The customers and every group's variant
    # are stacked into one matrix and predicted in one call (a call's fixed cost dominates for the few
    # customers of an incremental rescore); predictions are row by row, so the numbers are the same.
    # Chunked, so a full rescore's stacked matrix stays small.
    med = selector.baseline_.to_numpy(dtype=float)
    X = np.asarray(X, dtype=float)
    out = np.empty((len(X), len(groups)))
    for start in range(0, len(X), STACK_ROWS):
        part = X[start : start + STACK_ROWS]
        n = len(part)
        stacked = np.tile(part, (len(groups) + 1, 1))
        for j, g in enumerate(groups, start=1):
            stacked[j * n : (j + 1) * n, g] = med[g]
        scores = inner.decision_function(stacked).reshape(len(groups) + 1, n)
        out[start : start + n] = (scores[0] - scores[1:]).T
    return out


def explain(model: Pipeline, features: pd.DataFrame, top: int = 3, high: float = 0.7, probability=None) -> pd.DataFrame:
    """The top factors behind each customer's churn score, in plain words.

    For customers in the High band (p > ``high``) only factors that push the risk up are listed;
    for the others the strongest factors either way. Factors are ranked by their push on the
    log-odds (logistic: coefficient x standardised value; tree model: change when the factor's
    features are replaced by those of a typical returning customer of the training window, i.e. the
    medians of the customers who came back; rule: the conditions it checked); ties keep the
    ``REASON_GROUPS`` order, so the same input always gives the same reasons.

    Args:
        model: a pipeline from ``train_churn``; features: ``churn_features`` rows to explain.
        probability: the model's churn probabilities for ``features`` when the caller has them
            already (``score_churn``), so they are not predicted twice.

    Returns:
        Index ``customer_id``; columns ``reason_1`` .. ``reason_<top>`` (str, None when fewer apply).
    """
    columns = [f"reason_{i + 1}" for i in range(top)]
    if len(features) == 0:
        return pd.DataFrame(columns=columns, index=features.index, dtype=object)
    contrib = np.round(_contributions(model, features), 9)
    p = model.predict_proba(features)[:, 1] if probability is None else np.asarray(probability, dtype=float)
    is_high = (p > high)[:, None]
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
