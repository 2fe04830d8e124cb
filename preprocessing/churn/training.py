"""Training: candidates compared on a temporal holdout, the best refitted with calibration, or the rule.

``train_churn`` picks the cutoffs (train R - 2H, holdout R - H) and falls back to the rule when the
data cannot support them; ``train_churn_frames`` does the comparison and the calibrated refit on
labelled windows; ``holdout_metrics`` is what each model is judged (and reported) by.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline

from preprocessing.churn.estimators import CANDIDATES, _calibrated, _candidate, _wrap
from preprocessing.churn.features import FEATURES, churn_features
from preprocessing.churn.labels import _balance, _too_small, label_frame
from preprocessing.churn.rule import RuleModel
from preprocessing.features import reference_date


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


def train_churn_frames(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    latest: pd.DataFrame,
    *,
    horizon_days: int = 90,
    random_state: int = 0,
    check_calibration: bool = True,
    candidates: tuple[str, ...] = CANDIDATES,
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
        model=model,
        fallback=False,
        reason=reason,
        chosen=chosen,
        horizon_days=horizon_days,
        metrics=metrics,
        calibration_method=method,
        class_balance={"train": _balance(train), "holdout": _balance(holdout), "final": _balance(latest)},
    )


def train_churn(
    lines: pd.DataFrame, reference: pd.Timestamp | None = None, horizon_days: int = 90, random_state: int = 0
) -> ChurnTraining:
    """Train the churn model on a temporal split, or fall back to the rule when the data are too short.

    Args:
        lines: canonical purchase lines.
        reference: the scoring date R (default: the latest ``purchase_date``, never after today). Train cutoff R - 2H,
            holdout / final cutoff R - H; score customers with ``churn_features(lines, R)``.
        horizon_days: H, days after a cutoff in which a purchase means "not churned".
        random_state: seeds the tree model and the calibration folds (results are reproducible).

    Returns:
        ``ChurnTraining``; ``fallback=True`` with a ``RuleModel`` pipeline (fitted on the features
        as of R) and the reason when the split is impossible.
    """
    # Default: the latest purchase, never past today (a future-dated line must not shift every cutoff).
    reference = reference_date(lines["purchase_date"].max()) if reference is None else pd.Timestamp(reference)
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
        model=_wrap(RuleModel()).fit(now),
        fallback=True,
        chosen="rule",
        horizon_days=horizon_days,
        reason=f"fallback to the original rule: {why}",
        cutoffs={"reference": reference},
        selection_metric="none",
    )
