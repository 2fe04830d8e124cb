"""Score every customer with the current models and store the results on the customer rows.

Pages and exports read the stored scores (tier, churn probability/band/reasons, CLV) instead of
recomputing them; every page says "scored as of ...". Models that are not trained yet leave
their columns empty.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from portal import model_store
from portal.services import settings as settings_service
from portal.services import webhooks_out
from portal.services.dashboard import summary as dashboard_summary
from portal.services.mail import events as mail_events
from portal.services.scores import aggregates
from portal.services.scores import store as score_store
from portal.services.scores.dataset import load_lines
from portal.services.summaries import customers as customer_summaries
from preprocessing import churn as churn_model
from preprocessing import clv, coherence, lifecycle, segmentation
from preprocessing.features import compute_features, reference_date
from preprocessing.threads import single_threaded

log = logging.getLogger(__name__)


DAYS_PER_MONTH = 365.0 / 12.0


def tier_bar(features: pd.DataFrame, values: dict) -> tuple[float, float]:
    """The eligibility bar (purchases, spend) for a training run: derived from the store's data by default.

    ``tiers.bar`` = "derived": ``segmentation.derive_bar`` with the share ``tiers.share`` (the purchases
    and the lifetime spend that share of the last 12 months' customers reach); "fixed": the settings
    ``tier.min_frequency`` / ``tier.min_monetary``.
    """
    if values.get("tiers.bar", "derived") == "fixed":
        return float(values["tier.min_frequency"]), float(values["tier.min_monetary"])
    return segmentation.derive_bar(features, share=float(values["tiers.share"]))


def current_bar(values: dict) -> tuple[float, float]:
    """The bar scoring applies now: the one the tiers were trained with when derived, else the fixed settings."""
    if values.get("tiers.bar", "derived") == "fixed":
        return float(values["tier.min_frequency"]), float(values["tier.min_monetary"])
    params = (model_store.entry(model_store.SEGMENTATION_FILE) or {}).get("params", {})
    if params.get("bar") == "derived":
        return float(params["min_frequency"]), float(params["min_monetary"])
    return float(values["tier.min_frequency"]), float(values["tier.min_monetary"])


def retention_days(values: dict) -> float:
    """The tier retention period in days (``tiers.retention_months`` x 365/12)."""
    return float(values["tiers.retention_months"]) * DAYS_PER_MONTH


def tiers_for(features: pd.DataFrame, values: dict) -> pd.DataFrame | None:
    """Tier per customer with the stored segmentation model and the review rule, or None when not trained.

    Review: a tier is kept for the retention period after the last purchase; a customer idle longer
    than that holds no tier, and ``tier_reason`` says why (their TierChange record carries it).
    """
    try:
        kmeans = model_store.load(model_store.SEGMENTATION_FILE)
        scaler = model_store.load(model_store.SCALER_FILE)
    except model_store.ModelMissing:
        return None
    entry = model_store.entry(model_store.SEGMENTATION_FILE) or {}
    cluster_tiers = {int(k): v for k, v in entry.get("params", {}).get("cluster_tiers", {}).items()}
    tiers = segmentation.assign_tiers(features, scaler, kmeans, cluster_tiers, *current_bar(values))
    months = int(values["tiers.retention_months"])
    idle = features["recency"] > retention_days(values)
    reviewed = idle & tiers.notna()
    out = pd.DataFrame({"tier": tiers.where(~idle), "tier_reason": None}, index=features.index)
    out.loc[reviewed, "tier_reason"] = f"tier review: no purchase in the last {months} months"
    return out


def churn_for(inputs: ScoringInputs, values: dict) -> pd.DataFrame | None:
    """Churn probability, band and reasons per customer, or None when no churn model is trained."""
    try:
        model = model_store.load(model_store.CHURN_FILE)
    except model_store.ModelMissing:
        return None
    features = inputs.churn_features()
    p = churn_model.score_churn(model, features)
    out = pd.DataFrame(
        {"churn_probability": p, "churn_band": churn_model.band(p, values["churn.high"], values["churn.low"])}
    )
    reasons = churn_model.explain(model, features, top=3, high=values["churn.high"], probability=p.to_numpy())
    out["churn_reasons"] = [[r for r in row if r] for row in reasons.itertuples(index=False)]
    return out


def clv_for(inputs: ScoringInputs, values: dict, churn: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """P(alive), the chance of a purchase within 12 months, expected purchases in 90 days and 12-month CLV.

    None without a CLV model.

    With churn scores, all three come from one P(alive) reconciled with the churn probability
    (``preprocessing.coherence.customer_picture``), so the customer page never shows "High risk"
    next to "100 % still a customer"; without them, the purchase model's own numbers.
    """
    try:
        fitted = model_store.load(model_store.CLV_FILE)
    except model_store.ModelMissing:
        return None
    summary = inputs.rfm_summary()
    if summary.empty:
        return None
    bg, gg = fitted["bgnbd"], fitted["gamma_gamma"]
    if churn is not None and not churn.empty:
        picture = coherence.customer_picture(
            churn["churn_probability"].reindex(summary.index),
            bg,
            gg,
            summary,
            horizon_days=int(values["churn.horizon_days"]),
            discount_rate_annual=values["clv.discount_rate"],
        )
        return picture[["p_alive", "p_return_12m", "expected_purchases_90d", "clv_12m"]]
    alive = clv.p_alive(bg, summary)
    return pd.DataFrame(
        {
            "p_alive": alive,
            "p_return_12m": alive * (1.0 - clv.p_quiet_if_alive(bg, 365, summary)),
            "expected_purchases_90d": clv.expected_purchases(bg, 90, summary),
            "clv_12m": clv.clv(bg, gg, summary, months=12, discount_rate_annual=values["clv.discount_rate"]),
        },
        index=summary.index,
    )


def lifecycle_for(frame: pd.DataFrame, values: dict) -> pd.Series:
    """Lifecycle status per customer (``preprocessing.lifecycle``) from the features and the scores beside them.

    Computed from the same per-customer features on both scoring paths (pandas and SQL), so a
    customer gets the same status on SQLite and PostgreSQL.
    """
    return lifecycle.lifecycle_status(frame, high_churn=float(values["churn.high"])).astype(object)


@dataclass
class ScoringInputs:
    """What scoring reads from the purchase lines, as of the store's last trading moment.

    Two sources give the same values (tests/services/scores/test_scoring_sql.py): ``inputs_from_lines`` (every
    line in pandas; SQLite, where the data are in-process anyway) and ``inputs_from_database``
    (GROUP BYs in the database, one row per customer reaches Python; PostgreSQL, where pulling 10M
    lines would take gigabytes). The churn and CLV inputs are built on first use, so a store
    without those models never pays for them.
    """

    as_of: pd.Timestamp
    features: pd.DataFrame  # compute_features as of as_of
    spend_12m: pd.Series  # net spend after as_of - 365 days, aligned with features (0.0 when none)
    _churn: Callable[[], pd.DataFrame]
    _rfm: Callable[[], pd.DataFrame]

    def churn_features(self) -> pd.DataFrame:
        """``preprocessing.churn.churn_features`` as of ``as_of``."""
        return self._churn()

    def rfm_summary(self) -> pd.DataFrame:
        """``preprocessing.clv.rfm_summary`` as of ``as_of``'s day."""
        return self._rfm()


def inputs_from_lines(lines: pd.DataFrame) -> ScoringInputs | None:
    """Scoring inputs computed in pandas from every purchase line (None when no line is named)."""
    if lines.empty or lines["customer_id"].notna().sum() == 0:
        return None
    as_of = reference_date(lines["purchase_date"].max(), aggregates.stores_today())  # never after today
    features = compute_features(lines, as_of)
    named = lines[lines["customer_id"].notna()]
    recent = named["purchase_date"] > as_of - pd.Timedelta(days=365)
    spend_12m = named.loc[recent].groupby("customer_id", observed=True)["total_amount"].sum()
    return ScoringInputs(
        as_of,
        features,
        spend_12m.reindex(features.index).fillna(0.0),
        lambda: churn_model.churn_features(lines, as_of),
        lambda: clv.rfm_summary(lines, as_of=as_of),
    )


def inputs_from_database() -> ScoringInputs | None:
    """Scoring inputs aggregated by the database (None when no line is named); no line reaches Python."""
    latest = aggregates.reference_moment()  # the latest purchase, never after today
    if latest is None:
        return None
    as_of = latest.as_unit("ns")  # as load_lines' datetime64[ns] maximum would be
    features = aggregates.customer_features_sql(as_of, spend_12m=True)
    if features.empty:
        return None
    spend_12m = features.pop("spend_12m")
    return ScoringInputs(
        as_of,
        features,
        spend_12m,
        lambda: churn_model.churn_features_from(features, aggregates.churn_windows_sql(as_of)),
        lambda: clv.rfm_summary_from_day_totals(aggregates.clv_day_totals_sql(as_of), as_of),
    )


def rescore_all(reason: str = "rescored", progress=None) -> dict:
    """Recompute features and every trained model's scores for all customers; record tier changes.

    Returns:
        Counts for the caller's summary: scored customers, tier moves up/down, as_of.
    """
    with single_threaded():  # single-threaded BLAS/OpenMP: predictable on a shared host
        counts = _rescore_all(reason, progress)
    moves = counts.pop("transitions", None)
    if moves:  # who moved, for the outgoing webhooks (computed only when an endpoint wants them)
        webhooks_out.notify_rescore(moves, reason)
    dashboard_summary.refresh_after_rescore()  # the dashboard's stored line-level numbers follow the new data
    customer_summaries.refresh_after_rescore()  # so do the stored tier, band and KPI counts of every store
    from portal.services.flows.jobs import run_after_rescore  # here: flows read scores, scores must not import flows

    run_after_rescore()  # the automations run on the new scores (nightly rescore or an import's); never raises
    return counts


def _rescore_all(reason: str, progress) -> dict:
    progress = progress or (lambda *_: None)
    if aggregates.use_sql_features():  # PostgreSQL: GROUP BYs in the database, no line reaches Python
        progress(0.05, "computing features in the database")
        inputs = inputs_from_database()
    else:
        progress(0.05, "reading purchase lines")
        lines = load_lines()
        progress(0.2, "computing features")
        inputs = inputs_from_lines(lines)
    if inputs is None:  # no customer has a purchase (left): nobody keeps scores from lines now gone
        wanted = bool(webhooks_out.subscribed(webhooks_out.RESCORE_EVENTS))
        return {**score_store.store(pd.DataFrame(), True, reason, with_transitions=wanted), "as_of": None}
    as_of, features = inputs.as_of, inputs.features
    values = settings_service.all_values()
    frame = features.copy()
    frame["spend_12m"] = inputs.spend_12m
    progress(0.4, "assigning tiers")
    tiers = tiers_for(features, values)
    if tiers is not None:
        frame = frame.join(tiers)
    else:
        frame["tier"] = None
    progress(0.55, "scoring churn risk")
    churn = churn_for(inputs, values)
    if churn is not None:
        frame = frame.join(churn)
    progress(0.7, "scoring lifetime value")
    try:
        clv_frame = clv_for(inputs, values, churn)
    except Exception:  # a CLV model that cannot score these data must not stop tiers and churn
        log.exception("CLV scoring failed")
        clv_frame = None
    if clv_frame is not None:
        frame = frame.join(clv_frame)
    frame["lifecycle"] = lifecycle_for(frame, values)
    progress(0.8, "saving scores")
    mail_events.note_rescore(frame)  # e-mail alerts: who became High risk or Lapsing, read before it is overwritten
    wanted = bool(webhooks_out.subscribed(webhooks_out.RESCORE_EVENTS))
    counts = score_store.store(frame, tiers is not None, reason, with_transitions=wanted)
    counts["as_of"] = as_of.isoformat()
    return counts


def rescore_after_import(import_id: int) -> dict:
    """A finished import re-scores everyone with the current models (features moved for all)."""
    return rescore_all(reason=f"rescored after import #{import_id}")
