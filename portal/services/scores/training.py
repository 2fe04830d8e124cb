"""Train the models on the stored data, write them through the model store, then re-score.

Each ``train_*`` is a job function (``progress`` first) so the Models page runs it in the
background and ``flask train`` runs the very same code in the foreground.
"""

from __future__ import annotations

import logging

import pandas as pd
from threadpoolctl import threadpool_limits

from portal import jobs, model_store
from portal.extensions import db
from portal.jobs import JobError
from portal.services import settings as settings_service
from portal.services.scores import outlook, scoring
from portal.services.scores.dataset import load_lines
from preprocessing import churn as churn_model
from preprocessing import segmentation
from preprocessing.features import compute_features

log = logging.getLogger(__name__)

MODELS = ("segmentation", "churn", "clv", "bundles")


def _quiet(*_args) -> None:
    """A progress callback that records nothing (CLI and nested calls)."""


def _window(lines: pd.DataFrame) -> dict:
    named = lines[lines["customer_id"].notna()]
    return {
        "from": str(lines["purchase_date"].min()),
        "to": str(lines["purchase_date"].max()),
        "lines": int(len(lines)),
        "customers": int(named["customer_id"].nunique()),
    }


def _lines_or_refuse() -> pd.DataFrame:
    lines = load_lines()
    if lines.empty or lines["customer_id"].notna().sum() == 0:
        raise JobError("No purchase lines with customers yet: import a transactions file first.")
    return lines


@jobs.job("train.segmentation")
def train_segmentation(progress=_quiet, rescore: bool = True) -> dict:
    """Fit scaler + K-Means tiers on the eligible customers; pickle CS_model.pkl and CS_scalers.pkl."""
    progress(0.05, "reading purchase lines")
    lines = _lines_or_refuse()
    values = settings_service.all_values()
    progress(0.3, "computing features")
    features = compute_features(lines)
    min_frequency, min_monetary = scoring.tier_bar(features, values)
    progress(0.5, "fitting K-Means")
    try:
        result = segmentation.fit_segmentation(
            features, k=values["tier.k"], min_frequency=min_frequency, min_monetary=min_monetary
        )
    except ValueError as exc:
        raise JobError(f"Cannot fit tiers: {exc}. Lower the bar on the settings page.") from None
    centres = result.centres.reset_index().to_dict("records")
    profile = result.profile.reset_index().to_dict("records")
    params = {
        "cluster_tiers": {str(k): v for k, v in result.cluster_tiers.items()},
        "features": list(result.features),
        "centres": centres,
        "profile": profile,
        "min_frequency": min_frequency,
        "min_monetary": min_monetary,
        "bar": values["tiers.bar"],
        "share": values["tiers.share"],
        "k": values["tier.k"],
    }
    metrics = {
        "silhouette": result.silhouette,
        "n_customers": result.n_customers,
        "n_total": result.n_total,
        "share_eligible": result.n_customers / max(result.n_total, 1),
    }
    model_store.save(
        "segmentation",
        {model_store.SEGMENTATION_FILE: result.kmeans, model_store.SCALER_FILE: result.scaler},
        data_window=_window(lines),
        metrics=metrics,
        params=params,
    )
    db.session.commit()
    summary = {
        "message": f"Tiers fitted on {result.n_customers:,} of {result.n_total:,} customers "
        f"(silhouette {result.silhouette:.2f})",
        **metrics,
    }
    if rescore:
        progress(0.7, "re-scoring customers")
        moved = scoring.rescore_all(reason="segmentation retrained")
        _record_moves(moved)
        summary["message"] += f"; {moved['up']} moved up, {moved['down']} down"
    return summary


def _record_moves(moved: dict) -> None:
    """Keep the last retrain's up/down counts on its model record (the tiers page shows them)."""
    from sqlalchemy import select

    from portal.models import ModelRecord

    record = db.session.scalar(
        select(ModelRecord).where(ModelRecord.name == "segmentation", ModelRecord.active.is_(True))
    )
    if record is not None:
        record.manifest = {**record.manifest, "moves": {"up": moved["up"], "down": moved["down"]}}
        db.session.commit()


@jobs.job("train.churn")
def train_churn(progress=_quiet, rescore: bool = True) -> dict:
    """Train the churn model on a temporal split (or the documented rule fallback); pickle churn_model.pkl."""
    progress(0.05, "reading purchase lines")
    lines = _lines_or_refuse()
    horizon = settings_service.get("churn.horizon_days")
    progress(0.2, f"training candidates (horizon {horizon} days)")
    with threadpool_limits(limits=1):  # OpenMP threads oversubscribe a busy 2-core host (50x slower seen)
        result = churn_model.train_churn(lines, horizon_days=horizon)
    info = result.manifest()
    model_store.save(
        "churn",
        {model_store.CHURN_FILE: result.model},
        data_window=_window(lines),
        metrics=info.pop("metrics"),
        params={"chosen": result.chosen, "horizon_days": horizon},
        extra=info,
    )
    db.session.commit()
    summary = {"message": ("Churn model: " + result.reason), "chosen": result.chosen, "fallback": result.fallback}
    if rescore:
        progress(0.7, "re-scoring customers")
        scoring.rescore_all(reason="churn retrained")
    return summary


@jobs.job("train.clv")
def train_clv(progress=_quiet, rescore: bool = True) -> dict:
    """Fit MBG/NBD + Gamma-Gamma; pickle clv_model.pkl with the fitted parameters in the manifest.

    MBG/NBD (``clv.fit_purchase_model``) rather than BG/NBD: BG/NBD gives every one-time buyer
    P(alive) = 1, which contradicted the churn risk shown beside it.
    """
    from preprocessing import clv

    progress(0.05, "reading purchase lines")
    lines = _lines_or_refuse()
    progress(0.3, "fitting MBG/NBD and Gamma-Gamma")
    summary_frame = clv.rfm_summary(lines)
    try:
        bg = clv.fit_purchase_model(summary_frame)
        gg = clv.fit_gamma_gamma(summary_frame)
    except clv.CLVFitError as exc:
        raise JobError(f"Cannot fit the lifetime-value model: {exc}") from None
    params = {
        "bgnbd": {k: float(getattr(bg, k)) for k in ("r", "alpha", "a", "b")},
        "gamma_gamma": {k: float(getattr(gg, k)) for k in ("p", "q", "v")},
        "unit": "days",
        "purchase_model": bg.model,
    }
    metrics = {
        "bgnbd_log_likelihood": float(bg.log_likelihood),  # the purchase model's (MBG/NBD since #20)
        "gamma_gamma_log_likelihood": float(gg.log_likelihood),
        "customers": int(bg.n),
        "repeat_buyers": int(gg.n),
    }
    model_store.save(
        "clv",
        {model_store.CLV_FILE: {"bgnbd": bg, "gamma_gamma": gg}},
        data_window=_window(lines),
        metrics=metrics,
        params=params,
    )
    db.session.commit()
    progress(0.5, "forecasting the next 12 months and backtesting")
    outlook.record_outlook(lines, bg, gg, progress)
    result = {"message": f"Lifetime-value model fitted on {bg.n:,} customers ({gg.n:,} repeat buyers)", **metrics}
    if rescore:
        progress(0.7, "re-scoring customers")
        scoring.rescore_all(reason="clv retrained")
    return result


@jobs.job("train.bundles")
def train_bundles(progress=_quiet, rescore: bool = False) -> dict:
    """Mine bundle rules for dead stock and store them (see portal.services.bundles)."""
    from portal.services import bundles

    return bundles.train(progress=progress)


@jobs.job("train.all")
def train_all(progress=_quiet) -> dict:
    """Train every model in turn, then score customers once. A model that cannot be fitted on these
    data is skipped with its reason; the others still train."""
    steps = [
        ("segmentation", train_segmentation),
        ("churn", train_churn),
        ("clv", train_clv),
        ("bundles", train_bundles),
    ]
    messages = []
    for i, (name, func) in enumerate(steps):
        progress(i / (len(steps) + 1), f"training {name}")
        try:
            out = func(progress=_quiet, rescore=False)
            messages.append(out.get("message", f"{name} trained"))
        except JobError as exc:
            db.session.rollback()
            messages.append(f"{name} skipped: {exc}")
    progress(len(steps) / (len(steps) + 1), "re-scoring customers")
    moved = scoring.rescore_all(reason="models retrained")
    _record_moves(moved)
    messages.append(f"{moved['scored']:,} customers scored")
    return {"message": "; ".join(messages), "details": messages}
