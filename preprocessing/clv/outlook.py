"""The store outlook and its check: monthly forecasts with intervals, and a backtest against the data.

``forecast_monthly`` sums the fitted models' expected repeat purchases and revenue over the existing
customers by calendar month, with an interval from parameter uncertainty; ``backtest`` refits on the
data up to a cutoff and compares that forecast with what really happened (``mape``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from preprocessing.clv.bgnbd import _given_alive, _p_alive, fit_bgnbd
from preprocessing.clv.fitting import _compress
from preprocessing.clv.gamma_gamma import fit_gamma_gamma
from preprocessing.clv.params import BGNBDParams, GammaGammaParams
from preprocessing.clv.summary import _check_unit, _purchase_days, _summary_arrays, _unit_days, rfm_summary


def _month_periods(as_of: pd.Timestamp, months: int, data_end=None) -> pd.DataFrame:
    """Calendar months after ``as_of``: the first may be partial; all are clipped to ``data_end``."""
    first = (as_of + pd.Timedelta(days=1)).to_period("M")
    periods = pd.period_range(first, periods=months, freq="M")
    starts = periods.start_time.normalize()
    ends = periods.end_time.normalize()
    starts = starts.where(starts > as_of, as_of + pd.Timedelta(days=1))
    frame = pd.DataFrame({"month": starts.to_period("M").start_time, "start": starts, "end": ends})
    if data_end is not None:
        frame["end"] = frame["end"].where(frame["end"] <= data_end, data_end)
        frame = frame[frame["start"] <= frame["end"]].reset_index(drop=True)
    frame["days"] = (frame["end"] - frame["start"]).dt.days + 1
    return frame


def _draw(values: np.ndarray, cov_log, n: int, rng) -> np.ndarray:
    """Parameter draws from the asymptotic normal of the log-parameters (rows = draws)."""
    if cov_log is None:
        return np.tile(values, (n, 1))
    return np.exp(rng.multivariate_normal(np.log(values), np.asarray(cov_log), size=n))


def _totals(bg_vals, gg_vals, edges, x, tx, T, count, sum_m, known_hard=None, kind=BGNBDParams):
    """Expected purchases and revenue per period summed over customer groups (+ the quadrature mask).

    ``kind`` is the parameter class (``BGNBDParams`` or ``MBGNBDParams``): it picks the closed forms.
    """
    r, alpha, a, b = bg_vals
    params = kind(r, alpha, a, b, 0.0, 0)
    alive = _p_alive(params, x, tx, T)
    shift = 1.0 if params.model == "mbgnbd" else 0.0  # MBG/NBD: x+1 survived dropout chances
    given_alive, hard = _given_alive(r + x, alpha + T, a, b + x + shift, edges[1:, None], known_hard)
    cumulative = np.vstack([np.zeros(len(x)), alive * given_alive])  # (edges, groups)
    per_period = np.diff(cumulative, axis=0)  # expected purchases per customer of the group
    p, q, v = gg_vals
    group_spend = p * (count * v + x * sum_m) / (p * x + q - 1)  # sum of expected spend in group
    return per_period @ count, per_period @ group_spend, hard


def forecast_monthly(
    bg: BGNBDParams,
    gg: GammaGammaParams,
    summary: pd.DataFrame,
    as_of=None,
    months: int = 12,
    n_sims: int = 200,
    seed: int = 0,
    interval: float = 0.9,
    data_end=None,
    max_sim_customers: int = 1000,
) -> pd.DataFrame:
    """Store outlook: expected repeat purchases and revenue from the *existing* customers by calendar month.

    The interval comes from parameter uncertainty only: ``n_sims`` parameter sets are drawn from the
    asymptotic normal distribution of the log-parameters (inverse Hessian of the log-likelihood; BG/NBD
    and Gamma-Gamma independently) and the ``interval`` central quantiles of the resulting totals are
    reported. It leaves out purchase-to-purchase randomness and model misspecification, so it is a
    lower bound on the real uncertainty. For speed the draws are evaluated on a random sample of at
    most ``max_sim_customers`` customers and applied as a ratio to the full-population forecast (the
    spread of a ratio of sums over the same customers is stable with a few hundred of them), and they
    reuse the point estimate's hyp2f1 guard (entries that needed quadrature there get it again).

    Args:
        as_of: the summary's as_of day (default ``summary.attrs['as_of']``); month 1 starts the day after.
        data_end: optional last day to forecast (used by :func:`backtest` to match the data).
    Returns:
        DataFrame, one row per month: month (first day of the calendar month), start, end, days,
        expected_purchases, lower, upper, expected_revenue, revenue_lower, revenue_upper.
    """
    _check_unit(bg, summary)
    as_of = pd.Timestamp(summary.attrs["as_of"] if as_of is None else as_of).normalize()
    frame = _month_periods(as_of, months, None if data_end is None else pd.Timestamp(data_end).normalize())
    if frame.empty:
        raise ValueError("no forecast period after as_of")
    unit = _unit_days(bg.time_unit)
    edges = np.concatenate([[0.0], ((frame["end"] - as_of).dt.days + 0.0).to_numpy() / unit])
    x, tx, T = _summary_arrays(summary)
    m = np.where(x > 0, summary["monetary_value"].to_numpy(dtype=float), 0.0)
    (gx, gtx, gT), count, sum_m = _compress(x, tx, T, sum_of=m)
    kind = type(bg)
    purchases, revenue, _ = _totals(bg.values, gg.values, edges, gx, gtx, gT, count, sum_m, kind=kind)

    rng = np.random.default_rng(seed)
    sample = rng.choice(len(x), size=min(len(x), max_sim_customers), replace=False)
    (sx, stx, sT), scount, ssum_m = _compress(x[sample], tx[sample], T[sample], sum_of=m[sample])
    base_p, base_r, hard = _totals(bg.values, gg.values, edges, sx, stx, sT, scount, ssum_m, kind=kind)
    bg_draws = _draw(bg.values, bg.cov_log, n_sims, rng)
    gg_draws = _draw(gg.values, gg.cov_log, n_sims, rng)
    sims = [  # one vectorised evaluation per parameter draw
        _totals(bv, gv, edges, sx, stx, sT, scount, ssum_m, hard, kind) for bv, gv in zip(bg_draws, gg_draws)
    ]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_p = np.array([s[0] for s in sims]) / base_p
        ratio_r = np.array([s[1] for s in sims]) / base_r
    lo, hi = (1 - interval) / 2, (1 + interval) / 2
    frame["expected_purchases"] = purchases
    frame["lower"] = purchases * np.nanquantile(ratio_p, lo, axis=0)
    frame["upper"] = purchases * np.nanquantile(ratio_p, hi, axis=0)
    frame["expected_revenue"] = revenue
    frame["revenue_lower"] = revenue * np.nanquantile(ratio_r, lo, axis=0)
    frame["revenue_upper"] = revenue * np.nanquantile(ratio_r, hi, axis=0)
    return frame


def mape(actual, forecast) -> float:
    """Mean absolute percentage error over periods with a non-zero actual (as a fraction, not %)."""
    actual = np.asarray(actual, dtype=float)
    forecast = np.asarray(forecast, dtype=float)
    use = actual != 0
    if not use.any():
        return float("nan")
    return float(np.mean(np.abs(forecast[use] - actual[use]) / np.abs(actual[use])))


def backtest(lines: pd.DataFrame, cutoff, months: int = 6, model: str = "bgnbd", **forecast_kwargs) -> pd.DataFrame:
    """Fit on data up to ``cutoff`` and compare the monthly forecast with what really happened.

    ``model`` is the purchase model fitted (``"bgnbd"``, the default kept for existing callers, or
    ``"mbgnbd"``; see ``fit_purchase_model``).

    Only customers seen by the cutoff count on both sides (repeat purchase days, i.e. customer-days with
    positive spend, by calendar month); months are clipped to the last day in the data.

    Returns:
        :func:`forecast_monthly` columns plus actual_purchases, actual_revenue, abs_pct_error; ``attrs``
        holds mape_purchases, mape_revenue (fractions) and the fitted ``bg`` and ``gg`` parameters.
    """
    cutoff = pd.Timestamp(cutoff).normalize()
    summary = rfm_summary(lines, as_of=cutoff)
    if model == "mbgnbd":
        from preprocessing.clv.mbgnbd import fit_mbgnbd  # mbgnbd imports this package's bgnbd: import late

        bg = fit_mbgnbd(summary)
    elif model == "bgnbd":
        bg = fit_bgnbd(summary)
    else:
        raise ValueError(f"model must be 'bgnbd' or 'mbgnbd', not {model!r}")
    gg = fit_gamma_gamma(summary)
    daily = _purchase_days(lines)
    data_end = daily["day"].max()
    if pd.isna(data_end) or data_end <= cutoff:
        raise ValueError("no purchases after the cutoff to compare with")
    frame = forecast_monthly(bg, gg, summary, cutoff, months, data_end=data_end, **forecast_kwargs)
    future = daily[(daily["day"] > cutoff) & daily["customer_id"].isin(summary.index)]
    month = future["day"].dt.to_period("M").dt.start_time
    actual = future.groupby(month)["amount"].agg(["size", "sum"])
    frame["actual_purchases"] = frame["month"].map(actual["size"]).fillna(0).astype("int64")
    frame["actual_revenue"] = frame["month"].map(actual["sum"]).fillna(0.0)
    frame["abs_pct_error"] = (frame["expected_purchases"] - frame["actual_purchases"]).abs() / frame[
        "actual_purchases"
    ].where(frame["actual_purchases"] > 0)
    frame.attrs = {
        "mape_purchases": mape(frame["actual_purchases"], frame["expected_purchases"]),
        "mape_revenue": mape(frame["actual_revenue"], frame["expected_revenue"]),
        "bg": bg,
        "gg": gg,
    }
    return frame
