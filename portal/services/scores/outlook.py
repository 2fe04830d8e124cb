"""Store outlook and backtest of the CLV model, computed when the model is trained and kept with it.

Why here and not on the dashboard: the backtest refits BG/NBD + Gamma-Gamma on the data up to a
past cutoff, and the outlook draws a few hundred parameter sets; both take seconds to minutes on a
large store. ``record_outlook`` runs in the CLV training job (right after the model is saved) and
stores small JSON tables in the active ``clv`` ModelRecord's manifest under ``"outlook"``; the
dashboard only reads them (``for_scope``), so a page view never refits anything.

One outlook per scope: ``"all"`` (every store) and one per store id (that store's lines only, with
the same fitted parameters), so a manager's dashboard shows their store and nothing else.

Definitions (those of ``preprocessing.clv``): a *purchase* is a customer-day with positive spend;
the forecast covers *repeat* purchases of customers already known at the reference day (new
customers are not in it); the history shown beside it counts the same thing (every purchase day
of a customer except their first one).
"""

from __future__ import annotations

import logging
import math
from datetime import timezone

import pandas as pd
from sqlalchemy import select
from threadpoolctl import threadpool_limits

from portal.extensions import db
from portal.models import ModelRecord, Store
from preprocessing.features import reference_date

log = logging.getLogger(__name__)

FORECAST_MONTHS = 12
HISTORY_MONTHS = 12
BACKTEST_MONTHS = 6
INTERVAL = 0.9
N_SIMS = 200
ALL = "all"


def _quiet(*_args) -> None:
    """A progress callback that records nothing."""


def _num(value, digits: int = 2):
    """A JSON-safe rounded float (None for NaN/inf/None)."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, digits)


def _month(ts) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m")


def _purchase_days(lines: pd.DataFrame) -> pd.DataFrame:
    """Customer-days with positive spend: (customer_id, day, amount), sorted by customer and day."""
    day = pd.to_datetime(lines["purchase_date"]).dt.normalize()
    amount = pd.to_numeric(lines["total_amount"], errors="coerce")
    keep = lines["customer_id"].notna() & day.notna() & (amount > 0)
    frame = pd.DataFrame(
        {"customer_id": lines["customer_id"][keep].astype(str), "day": day[keep], "amount": amount[keep]}
    )
    return frame.groupby(["customer_id", "day"], sort=True, as_index=False)["amount"].sum()


def repeat_history(lines: pd.DataFrame, as_of, months: int = HISTORY_MONTHS) -> list[dict]:
    """Actual repeat purchases and their revenue per calendar month, the ``months`` up to ``as_of``.

    Returns:
        [{"month": "YYYY-MM", "purchases": int, "revenue": float}], oldest first, zero-filled.
    """
    as_of = pd.Timestamp(as_of).normalize()
    daily = _purchase_days(lines)
    daily = daily[daily["day"] <= as_of]
    repeat = daily[daily["customer_id"].duplicated()]  # sorted by customer, day: all but the first day
    periods = pd.period_range(end=as_of.to_period("M"), periods=months, freq="M")
    grouped = repeat.groupby(repeat["day"].dt.to_period("M"))["amount"].agg(["size", "sum"])
    grouped = grouped.reindex(periods, fill_value=0)
    return [
        {"month": str(p), "purchases": int(n), "revenue": _num(s)}
        for p, n, s in zip(periods, grouped["size"], grouped["sum"])
    ]


def _forecast_rows(frame: pd.DataFrame) -> list[dict]:
    return [
        {
            "month": _month(r.month),
            "days": int(r.days),
            "expected_purchases": _num(r.expected_purchases, 1),
            "lower": _num(r.lower, 1),
            "upper": _num(r.upper, 1),
            "expected_revenue": _num(r.expected_revenue),
            "revenue_lower": _num(r.revenue_lower),
            "revenue_upper": _num(r.revenue_upper),
        }
        for r in frame.itertuples(index=False)
    ]


def _backtest_rows(frame: pd.DataFrame) -> list[dict]:
    rows = _forecast_rows(frame)
    for row, r in zip(rows, frame.itertuples(index=False)):
        row.update(
            actual_purchases=int(r.actual_purchases),
            actual_revenue=_num(r.actual_revenue),
            abs_pct_error=_num(r.abs_pct_error, 4),
        )
    return rows


def _store_backtest(clv, lines: pd.DataFrame, bg, gg, cutoff: pd.Timestamp, data_end: pd.Timestamp) -> pd.DataFrame:
    """``clv.backtest`` for a subset of lines with parameters already fitted at ``cutoff`` (no refit)."""
    summary = clv.rfm_summary(lines, as_of=cutoff)
    frame = clv.forecast_monthly(
        bg, gg, summary, cutoff, BACKTEST_MONTHS + 1, data_end=data_end, n_sims=N_SIMS, interval=INTERVAL
    )
    daily = _purchase_days(lines)
    future = daily[(daily["day"] > cutoff) & daily["customer_id"].isin(summary.index.astype(str))]
    actual = future.groupby(future["day"].dt.to_period("M").dt.start_time)["amount"].agg(["size", "sum"])
    frame["actual_purchases"] = frame["month"].map(actual["size"]).fillna(0).astype("int64")
    frame["actual_revenue"] = frame["month"].map(actual["sum"]).fillna(0.0)
    frame["abs_pct_error"] = (frame["expected_purchases"] - frame["actual_purchases"]).abs() / frame[
        "actual_purchases"
    ].where(frame["actual_purchases"] > 0)
    frame.attrs = {
        "mape_purchases": clv.mape(frame["actual_purchases"], frame["expected_purchases"]),
        "mape_revenue": clv.mape(frame["actual_revenue"], frame["expected_revenue"]),
    }
    return frame


def _backtest_block(frame: pd.DataFrame, cutoff: pd.Timestamp) -> dict:
    return {
        "cutoff": cutoff.date().isoformat(),
        "months": _backtest_rows(frame),
        "mape_purchases": _num(frame.attrs.get("mape_purchases"), 4),
        "mape_revenue": _num(frame.attrs.get("mape_revenue"), 4),
    }


def compute_outlook(lines: pd.DataFrame, bg, gg, store_ids: dict[str, int] | None = None, progress=_quiet) -> dict:
    """Forecast, history and backtest for all stores and for each store, as JSON-ready tables.

    Args:
        lines: the canonical purchase lines the model was fitted on (``store`` column = store name).
        bg, gg: the fitted BGNBDParams / GammaGammaParams (the ones just pickled).
        store_ids: store name -> id, to key the per-store outlooks by id.
    Returns:
        {"as_of", "interval", "months", "backtest_cutoff", "backtest_error", "scopes": {"all" | "<store id>":
        {"customers", "history", "forecast", "backtest" or None}}}.
    """
    from preprocessing import clv

    with threadpool_limits(limits=1):  # BLAS/OpenMP threads oversubscribe a busy 2-core host
        return _compute(clv, lines, bg, gg, store_ids or {}, progress)


def _compute(clv, lines, bg, gg, store_ids, progress) -> dict:
    named = lines[lines["customer_id"].notna()]
    as_of = reference_date(named["purchase_date"].max()).normalize()  # never after today
    scopes: dict[str, pd.DataFrame] = {ALL: named}
    if "store" in named.columns and store_ids:
        store_col = named["store"].astype(str)
        for name in sorted(store_col.unique()):
            if name in store_ids:
                scopes[str(store_ids[name])] = named[store_col == name]
    out = {
        "as_of": as_of.date().isoformat(),
        "interval": INTERVAL,
        "months": FORECAST_MONTHS,
        "backtest_months": BACKTEST_MONTHS,
        "scopes": {},
        "backtest_error": None,
        "backtest_cutoff": None,
    }

    # Backtest: one refit on the data up to six months before the end, applied to every scope.
    cutoff = (as_of - pd.DateOffset(months=BACKTEST_MONTHS)).normalize()
    data_end = as_of
    backtests: dict[str, pd.DataFrame] = {}
    progress(0.1, f"backtest: refitting on purchases up to {cutoff.date()}")
    try:
        # One month more than the gap: a cutoff mid-month leaves a partial month at each end (clipped to the data).
        overall = clv.backtest(
            named, cutoff, months=BACKTEST_MONTHS + 1, n_sims=N_SIMS, interval=INTERVAL, model=bg.model
        )
        backtests[ALL] = overall
        out["backtest_cutoff"] = cutoff.date().isoformat()
        for key, frame in scopes.items():
            if key == ALL:
                continue
            try:
                backtests[key] = _store_backtest(clv, frame, overall.attrs["bg"], overall.attrs["gg"], cutoff, data_end)
            except ValueError as exc:  # a store with no customers before the cutoff
                log.info("no backtest for store %s: %s", key, exc)
    except (clv.CLVFitError, ValueError) as exc:
        out["backtest_error"] = f"No backtest: the data up to {cutoff.date()} cannot support a fit ({exc})"

    for i, (key, frame) in enumerate(scopes.items()):
        progress(0.4 + 0.5 * i / len(scopes), "forecasting the store outlook")
        try:
            summary = clv.rfm_summary(frame, as_of=as_of)
            forecast = clv.forecast_monthly(bg, gg, summary, as_of, FORECAST_MONTHS, n_sims=N_SIMS, interval=INTERVAL)
        except ValueError as exc:
            log.info("no outlook for scope %s: %s", key, exc)
            continue
        out["scopes"][key] = {
            "customers": int(len(summary)),
            "history": repeat_history(frame, as_of),
            "forecast": _forecast_rows(forecast),
            "backtest": _backtest_block(backtests[key], cutoff) if key in backtests else None,
        }
    return out


def record_outlook(lines: pd.DataFrame, bg, gg, progress=_quiet) -> dict | None:
    """Compute the outlook and keep it in the active ``clv`` ModelRecord's manifest; commits.

    Called by ``training.train_clv`` right after the model is saved. A failure here never fails the
    training: the dashboard then says the outlook could not be computed, with the reason.
    Returns the stored outlook (None when there is no active clv record).
    """
    record = db.session.scalar(select(ModelRecord).where(ModelRecord.name == "clv", ModelRecord.active.is_(True)))
    if record is None:
        return None
    store_ids = dict(db.session.execute(select(Store.name, Store.id)).all())
    try:
        outlook = compute_outlook(lines, bg, gg, store_ids, progress)
    except Exception as exc:  # the model itself is fine; the dashboard shows why the outlook is missing
        log.exception("store outlook failed")
        outlook = {"error": f"The outlook could not be computed: {exc}", "scopes": {}}
    record.manifest = {**record.manifest, "outlook": outlook}
    db.session.commit()
    return outlook


def for_scope(store_id: int | None) -> dict | None:
    """The stored outlook for one store (None: all stores), plus the model's context, for the dashboard.

    Returns None when no CLV model is trained; otherwise a dict with ``trained_at``, ``outlook`` (the
    whole stored block or None if training predates it), ``scope`` (this store's tables or None) and
    ``charts`` (see :func:`charts`).
    """
    record = db.session.scalar(select(ModelRecord).where(ModelRecord.name == "clv", ModelRecord.active.is_(True)))
    if record is None:
        return None
    outlook = (record.manifest or {}).get("outlook")
    scope = None
    if outlook:
        scope = outlook.get("scopes", {}).get(ALL if store_id is None else str(store_id))
    trained_at = record.trained_at
    if trained_at is not None and trained_at.tzinfo is None:  # stored in UTC; SQLite returns it naive
        trained_at = trained_at.replace(tzinfo=timezone.utc)
    return {"trained_at": trained_at, "outlook": outlook, "scope": scope, "charts": charts(scope) if scope else None}


def charts(scope: dict) -> dict:
    """Chart specs for one scope's stored tables: revenue history + forecast band, and the backtest.

    The month of the reference day can appear on both sides (actual up to that day, forecast after);
    it is one label with both values.
    """
    history = {h["month"]: h for h in scope.get("history", [])}
    forecast = {f["month"]: f for f in scope.get("forecast", [])}
    labels = sorted(set(history) | set(forecast))

    def series(source: dict, key: str) -> list:
        return [source[m][key] if m in source else None for m in labels]

    outlook_chart = {
        "type": "line",
        "labels": labels,
        "datasets": [
            {"label": "Actual repeat revenue", "data": series(history, "revenue")},
            {"label": "Expected revenue", "data": series(forecast, "expected_revenue")},
            {"label": "Lower bound", "data": series(forecast, "revenue_lower")},
            {"label": "Upper bound", "data": series(forecast, "revenue_upper")},
        ],
        "scales": {"y": {"beginAtZero": True}},
    }
    backtest_chart = None
    backtest = scope.get("backtest")
    if backtest:
        months = backtest["months"]
        backtest_chart = {
            "type": "line",
            "labels": [m["month"] for m in months],
            "datasets": [
                {"label": "Actual repeat purchases", "data": [m["actual_purchases"] for m in months]},
                {"label": "Forecast", "data": [m["expected_purchases"] for m in months]},
                {"label": "Lower bound", "data": [m["lower"] for m in months]},
                {"label": "Upper bound", "data": [m["upper"] for m in months]},
            ],
            "scales": {"y": {"beginAtZero": True}},
        }
    totals = {
        "purchases": sum(f["expected_purchases"] or 0 for f in scope.get("forecast", [])),
        "revenue": sum(f["expected_revenue"] or 0 for f in scope.get("forecast", [])),
    }
    # No interval on the totals: monthly quantiles do not add up to a quantile of the sum.
    return {"outlook": outlook_chart, "backtest": backtest_chart, "totals": totals}
