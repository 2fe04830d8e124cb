"""Customer lifetime value: BG/NBD purchase counts and Gamma-Gamma spend, fitted by maximum likelihood.

Why these models: they need only three numbers per customer (how often, how recently, how long we
have known them) plus mean spend, they forecast the *future* rather than describe the past, and they
are the standard in the literature (Fader, Hardie & Lee 2005, "Counting your customers the easy way";
Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves"). Pure numpy/scipy: no `lifetimes`
(unmaintained since 2020) and no PyMC (too heavy for a web app).

Conventions used throughout:

* A *purchase* is a customer-day with positive spend; several invoices on one day count once.
  Returns (negative ``total_amount``) and zero-value lines are not purchases and are ignored.
* ``frequency`` = number of *repeat* purchase days (distinct purchase days - 1),
  ``recency`` = time from the first to the last purchase day, ``T`` = time from the first purchase
  day to the ``as_of`` day, ``monetary_value`` = mean spend per repeat purchase day (first day
  excluded, 0 for non-repeaters). Times are in days (``freq='D'``, default) or weeks (``'W'``);
  every horizon ``t`` passed to a function is in the summary's unit.
* Parameters are estimated on log scale with L-BFGS-B; their asymptotic covariance (inverse of the
  numerical Hessian of the negative log-likelihood in log space) is kept on the result and drives
  the forecast intervals (parameter uncertainty only, see :func:`forecast_monthly`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special
from threadpoolctl import threadpool_limits  # installed with scikit-learn

MIN_REPEAT_BUYERS = 20
DAYS_PER_MONTH = 365.25 / 12
_UNIT_DAYS = {"D": 1.0, "W": 7.0}
# Parameter search box in *scaled* units (times divided by their mean, money by its mean), so the same
# box fits stores that count in days or weeks, in pounds or in yen. An estimate on the box edge means
# the likelihood keeps rising towards a limiting case of the model (reported in ``at_bound``).
_LOG_BOUND = math.log(1e4)


class CLVFitError(ValueError):
    """The data cannot support a CLV model fit (too few repeat buyers, or a degenerate optimum)."""


@dataclass(frozen=True)
class BGNBDParams:
    """Fitted BG/NBD parameters: purchase rate lambda ~ Gamma(r, alpha), dropout p ~ Beta(a, b).

    ``alpha`` is in the summary's time unit (``time_unit``); ``cov_log`` is the asymptotic covariance
    of (log r, log alpha, log a, log b), or None when the Hessian was not positive definite.
    ``at_bound`` names parameters that ran to the edge of the search box (a limiting case of the
    model, e.g. ``a`` -> 0: the data show no sign of customers dropping out); they are held fixed in
    ``cov_log`` (zero variance) and should be read as "very small/large", not as exact values.
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n: int
    n_repeat: int = 0
    time_unit: str = "D"
    cov_log: tuple[tuple[float, ...], ...] | None = None
    at_bound: tuple[str, ...] = ()

    @property
    def values(self) -> np.ndarray:
        """The four model parameters (r, alpha, a, b) as an array."""
        return np.array([self.r, self.alpha, self.a, self.b])

    def std_errors(self) -> dict[str, float] | None:
        """Asymptotic standard errors on the natural scale (delta method from log scale)."""
        return _std_errors(("r", "alpha", "a", "b"), self.values, self.cov_log)


@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters: spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, v).

    ``v`` is in money units; the population mean spend per purchase is ``p * v / (q - 1)``.
    ``cov_log`` is the asymptotic covariance of (log p, log q, log v) or None; ``at_bound`` as for
    :class:`BGNBDParams`.
    """

    p: float
    q: float
    v: float
    log_likelihood: float
    n: int
    cov_log: tuple[tuple[float, ...], ...] | None = None
    at_bound: tuple[str, ...] = ()

    @property
    def values(self) -> np.ndarray:
        """The three model parameters (p, q, v) as an array."""
        return np.array([self.p, self.q, self.v])

    def std_errors(self) -> dict[str, float] | None:
        """Asymptotic standard errors on the natural scale (delta method from log scale)."""
        return _std_errors(("p", "q", "v"), self.values, self.cov_log)


def _std_errors(names, values, cov_log):
    if cov_log is None:
        return None
    se_log = np.sqrt(np.diag(np.asarray(cov_log)))
    return {name: float(value * se) for name, value, se in zip(names, values, se_log)}


# --------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------


def _unit_days(freq: str) -> float:
    try:
        return _UNIT_DAYS[freq]
    except KeyError:
        raise ValueError(f"freq must be 'D' (days) or 'W' (weeks), not {freq!r}") from None


def _purchase_days(lines: pd.DataFrame) -> pd.DataFrame:
    """Customer-day purchases: one row per (customer_id, day) with that day's positive spend."""
    missing = {"customer_id", "purchase_date", "total_amount"} - set(lines.columns)
    if missing:
        raise ValueError(f"purchase lines lack column(s): {', '.join(sorted(missing))}")
    day = pd.to_datetime(lines["purchase_date"]).dt.normalize()
    amount = pd.to_numeric(lines["total_amount"], errors="coerce")
    keep = lines["customer_id"].notna() & day.notna() & (amount > 0)
    frame = pd.DataFrame(
        {"customer_id": lines["customer_id"][keep], "day": day[keep], "amount": amount[keep]}
    )
    return frame.groupby(["customer_id", "day"], sort=True, as_index=False)["amount"].sum()


def rfm_summary(lines: pd.DataFrame, as_of=None, freq: str = "D") -> pd.DataFrame:
    """Per-customer (frequency, recency, T, monetary_value): the sufficient statistics of BG/NBD + Gamma-Gamma.

    Args:
        lines: canonical purchase lines (``customer_id``, ``purchase_date``, ``total_amount`` used).
            Anonymous lines (no customer_id), returns and zero-value lines are dropped; lines on days
            after ``as_of`` are ignored.
        as_of: the reference *day* (time of day ignored); default the day of the latest line.
        freq: time unit of ``recency`` and ``T``: 'D' days or 'W' weeks (purchases still counted by day).

    Returns:
        DataFrame indexed by ``customer_id`` with int ``frequency`` (repeat purchase days) and float
        ``recency``, ``T`` (in ``freq`` units) and ``monetary_value`` (mean spend per repeat purchase
        day, 0 for non-repeaters). ``attrs`` carries ``as_of`` (Timestamp) and ``time_unit``.
    """
    unit = _unit_days(freq)
    if as_of is None:
        latest = pd.to_datetime(lines["purchase_date"]).max() if len(lines) else pd.NaT
        if pd.isna(latest):
            raise ValueError("no dated purchase lines: cannot choose an as_of day")
        as_of_day = latest.normalize()
    else:
        as_of_day = pd.Timestamp(as_of).normalize()
    daily = _purchase_days(lines)
    return rfm_summary_from_day_totals(_day_totals(daily[daily["day"] <= as_of_day]), as_of_day, freq)


def _day_totals(daily: pd.DataFrame) -> pd.DataFrame:
    """``_purchase_days`` rows (sorted by customer, day) reduced to the per-customer totals
    ``rfm_summary_from_day_totals`` reads."""
    first_amount = daily["amount"].where(~daily["customer_id"].duplicated(), 0.0)
    grouped = daily.assign(first_amount=first_amount).groupby("customer_id", sort=True)
    return grouped.agg(
        n_days=("day", "size"),
        first_day=("day", "min"),
        last_day=("day", "max"),
        total=("amount", "sum"),
        first_amount=("first_amount", "sum"),
    )


def rfm_summary_from_day_totals(totals: pd.DataFrame, as_of, freq: str = "D") -> pd.DataFrame:
    """``rfm_summary`` from per-customer purchase-day totals instead of lines.

    The same summary without the lines in memory: a database can reduce the purchase days itself
    (``portal.services.aggregates.clv_day_totals_sql``) and send one row per customer.

    Args:
        totals: one row per customer (the index becomes ``customer_id``) over the purchase days
            (customer-days with positive spend, as ``rfm_summary`` counts them) on or before the
            ``as_of`` day: ``n_days`` (int), ``first_day`` / ``last_day`` (datetime64, midnight),
            ``total`` (spend over those days) and ``first_amount`` (spend on the first day).
        as_of: the reference *day* (time of day ignored).
        freq: time unit of ``recency`` and ``T``: 'D' days or 'W' weeks.

    Returns:
        The ``rfm_summary`` frame (same columns, dtypes and ``attrs``).
    """
    unit = _unit_days(freq)
    as_of_day = pd.Timestamp(as_of).normalize()
    frequency = (totals["n_days"] - 1).astype("int64")
    repeat_spend = totals["total"] - totals["first_amount"]
    monetary = (repeat_spend / frequency.where(frequency > 0)).fillna(0.0)
    summary = pd.DataFrame(
        {
            "frequency": frequency,
            "recency": (totals["last_day"] - totals["first_day"]).dt.days.astype(float) / unit,
            "T": (as_of_day - totals["first_day"]).dt.days.astype(float) / unit,
            "monetary_value": monetary.astype(float),
        },
        index=totals.index.rename("customer_id"),
    )
    summary.attrs = {"as_of": as_of_day, "time_unit": freq}
    return summary


def _summary_arrays(summary: pd.DataFrame):
    """Validated float arrays (x, t_x, T) from a summary frame."""
    missing = {"frequency", "recency", "T"} - set(summary.columns)
    if missing:
        raise ValueError(f"summary lacks column(s): {', '.join(sorted(missing))}")
    x = summary["frequency"].to_numpy(dtype=float)
    tx = summary["recency"].to_numpy(dtype=float)
    T = summary["T"].to_numpy(dtype=float)
    if not (np.isfinite(x).all() and np.isfinite(tx).all() and np.isfinite(T).all()):
        raise ValueError("summary has missing or infinite frequency/recency/T")
    if (x < 0).any() or (tx < 0).any() or (tx > T + 1e-9).any():
        raise ValueError("summary must satisfy frequency >= 0 and 0 <= recency <= T")
    if ((x == 0) & (tx > 0)).any():
        raise ValueError("customers with frequency 0 must have recency 0")
    return x, tx, T


def _check_unit(params: BGNBDParams, summary: pd.DataFrame) -> None:
    unit = summary.attrs.get("time_unit", params.time_unit)
    if unit != params.time_unit:
        raise ValueError(
            f"summary is in unit {unit!r} but the model was fitted in {params.time_unit!r}"
        )


# --------------------------------------------------------------------------------------------------
# Maximum likelihood helpers
# --------------------------------------------------------------------------------------------------


def _compress(*columns: np.ndarray, sum_of: np.ndarray | None = None):
    """Identical rows collapsed to (unique columns, counts[, sums of ``sum_of`` per row group]).

    Exact, and worth it: daily data repeats (frequency, recency, T) a lot.
    """
    codes = _group_codes(*columns)
    counts = np.bincount(codes).astype(float)
    unique = [np.empty(len(counts)) for _ in columns]
    for u, c in zip(unique, columns):
        u[codes] = c
    if sum_of is None:
        return unique, counts
    return unique, counts, np.bincount(codes, weights=sum_of, minlength=len(counts))


def _group_codes(*columns: np.ndarray) -> np.ndarray:
    """Group number of each row's combination of values (hash-based, first-seen order)."""
    frame = pd.DataFrame({str(i): c for i, c in enumerate(columns)})
    return frame.groupby(list(frame.columns), sort=False).ngroup().to_numpy()


def _numerical_hessian(grad, theta: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """Central differences of an analytic gradient; symmetrised."""
    k = len(theta)
    hess = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = step
        hess[i] = (grad(theta + e) - grad(theta - e)) / (2 * step)
    return (hess + hess.T) / 2


def _covariance(hess: np.ndarray, free: np.ndarray):
    """Inverse Hessian over the free parameters (those on the box edge held fixed: zero rows/columns).

    Nested tuples so the dataclass stays hashable and JSON-friendly; None when the free block is not
    positive definite (then forecasts carry no interval).
    """
    k = len(free)
    cov = np.zeros((k, k))
    if free.any():
        block = hess[np.ix_(free, free)]
        if not np.isfinite(block).all() or np.linalg.eigvalsh(block).min() <= 0:
            return None
        cov[np.ix_(free, free)] = np.linalg.inv(block)
    return tuple(tuple(float(c) for c in row) for row in cov)


def _minimise(neg_ll_grad, starts, names):
    """L-BFGS-B in log space from the first start, trying the others only if it fails or hits the box.

    Returns (result, names of parameters on the box edge). A parameter on the edge means the maximum
    is a limiting case of the model (a -> 0 or b -> inf: no evidence of dropout; r, alpha -> inf with
    r/alpha fixed: no heterogeneity in purchase rate), which still predicts sensibly.
    """
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(names)
    best = None
    for start in starts:
        # L-BFGS-B does tiny BLAS calls every iteration; a multi-threaded OpenBLAS makes them ~15x slower.
        with np.errstate(all="ignore"), threadpool_limits(limits=1, user_api="blas"):
            res = optimize.minimize(
                neg_ll_grad, np.log(start), jac=True, method="L-BFGS-B", bounds=bounds,
                options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-8},
            )
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
        if best is not None and _converged(best) and not _on_edge(best.x).any():
            break
    if best is None:
        raise CLVFitError("the likelihood could not be evaluated at any starting point")
    if not _converged(best):
        raise CLVFitError(f"the optimiser did not converge ({best.message})")
    return best, tuple(n for n, edge in zip(names, _on_edge(best.x)) if edge)


def _on_edge(log_theta: np.ndarray) -> np.ndarray:
    return np.abs(log_theta) > _LOG_BOUND - 1e-3


def _converged(res) -> bool:
    """Projected gradient small: components on the box edge may point outwards."""
    grad = np.where(_on_edge(res.x) & (np.sign(res.jac) == -np.sign(res.x)), 0.0, res.jac)
    return bool(np.max(np.abs(grad)) < 1e-4)


# --------------------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------------------


class _BGNBDLikelihood:
    """Mean negative log-likelihood of BG/NBD and its gradient in log-parameter space.

    Per customer (Fader, Hardie & Lee 2005, eq. 6), with A = Gamma(r+x) alpha^r / Gamma(r):
      L = A [ B(a, b+x)/B(a, b) (alpha+T)^-(r+x) + [x>0] B(a+1, b+x-1)/B(a, b) (alpha+t_x)^-(r+x) ]
    evaluated as log A + logaddexp(term1, term2) with betaln/gammaln, so nothing overflows for
    large x. Terms that depend only on x are computed once per distinct x.
    """

    def __init__(self, x, tx, T):
        (self.x, self.tx, self.T), self.w = _compress(x, tx, T)
        self.ux, self.xi = np.unique(self.x, return_inverse=True)
        self.rep = self.x > 0
        self.urep = self.ux > 0
        self.total = self.w.sum()

    def __call__(self, log_theta):
        r, alpha, a, b = np.exp(log_theta)
        ux, xi, x = self.ux, self.xi, self.x
        bx1 = np.where(self.urep, b + ux - 1, 1.0)  # B(a+1, b+x-1) exists only for x > 0
        g_rx = (special.gammaln(r + ux) - special.gammaln(r))[xi]
        bl1 = special.betaln(a, b + ux)[xi]
        bl2 = special.betaln(a + 1, bx1)[xi]
        log_aT = np.log(alpha + self.T)
        log_atx = np.log(alpha + self.tx)
        t1 = bl1 - (r + x) * log_aT
        t2 = np.where(self.rep, bl2 - (r + x) * log_atx, -np.inf)
        lse = np.logaddexp(t1, t2)
        ll = g_rx + r * math.log(alpha) - special.betaln(a, b) + lse
        w1 = np.exp(t1 - lse)
        w2 = np.exp(t2 - lse)
        dig_abx = special.digamma(a + b + ux)[xi]
        d_r = (special.digamma(r + ux) - special.digamma(r))[xi] + math.log(alpha) - w1 * log_aT - w2 * log_atx
        d_alpha = r / alpha - (r + x) * (w1 / (alpha + self.T) + w2 / (alpha + self.tx))
        dig_ab = special.digamma(a + b)
        d_a = (
            -(special.digamma(a) - dig_ab)
            + w1 * (special.digamma(a) - dig_abx)
            + w2 * (special.digamma(a + 1) - dig_abx)
        )
        d_b = (
            -(special.digamma(b) - dig_ab)
            + w1 * (special.digamma(b + ux)[xi] - dig_abx)
            + w2 * (special.digamma(bx1)[xi] - dig_abx)
        )
        w = self.w
        grad = np.array([w @ d_r * r, w @ d_alpha * alpha, w @ d_a * a, w @ d_b * b])
        value = w @ ll
        if not np.isfinite(value):
            return np.inf, np.zeros(4)
        return -value / self.total, -grad / self.total


def fit_bgnbd(summary: pd.DataFrame) -> BGNBDParams:
    """Fit BG/NBD by maximum likelihood to an :func:`rfm_summary` frame.

    Raises:
        CLVFitError: no customers, nobody repeats, fewer than ``MIN_REPEAT_BUYERS`` repeat buyers, or
            the optimiser does not converge.
    """
    x, tx, T = _summary_arrays(summary)
    n = len(x)
    n_repeat = int((x > 0).sum())
    _check_enough_repeaters(n, n_repeat, "BG/NBD")
    # Work in time scaled by mean T so alpha is O(1) whatever the unit; undo at the end.
    scale = float(T.mean())
    lik = _BGNBDLikelihood(x, tx / scale, T / scale)
    # Start: E[lambda] = r/alpha matches the observed repeat rate; dropout p around 0.25.
    rate = x.sum() / T.sum() * scale
    starts = [(1.0, 1.0 / rate, 1.0, 3.0), (0.25, 0.25 / rate, 0.8, 2.5), (3.0, 3.0 / rate, 2.0, 10.0)]
    res, at_bound = _minimise(lik, starts, ("r", "alpha", "a", "b"))
    r, alpha_s, a, b = np.exp(res.x)
    hess = _numerical_hessian(lambda th: lik(th)[1] * lik.total, res.x)
    # The time rescaling multiplies the likelihood by scale^-x per customer (it is a density in time).
    log_lik = -res.fun * lik.total - x.sum() * math.log(scale)
    return BGNBDParams(
        r=float(r), alpha=float(alpha_s * scale), a=float(a), b=float(b),
        log_likelihood=float(log_lik), n=n, n_repeat=n_repeat,
        time_unit=summary.attrs.get("time_unit", "D"), cov_log=_covariance(hess, ~_on_edge(res.x)),
        at_bound=at_bound,
    )


def _check_enough_repeaters(n: int, n_repeat: int, model: str) -> None:
    if n == 0:
        raise CLVFitError(f"{model}: no customers in the data")
    if n_repeat == 0:
        raise CLVFitError(
            f"{model}: none of the {n} customer(s) made a repeat purchase; the model learns from "
            "repeat purchases, so it cannot be fitted yet"
        )
    if n_repeat < MIN_REPEAT_BUYERS:
        raise CLVFitError(
            f"{model}: only {n_repeat} of {n} customer(s) made a repeat purchase; at least "
            f"{MIN_REPEAT_BUYERS} repeat buyers are needed for a stable fit"
        )


_GL_NODES, _GL_WEIGHTS = special.roots_legendre(128)
_TAIL = 1e-10


def _given_alive_quadrature(r, alpha, a, b, t):
    """E_p[(1 - (alpha/(alpha + p t))^r) / p] for p ~ Beta(a, b) by quadrature in log space.

    The fallback where hyp2f1 cannot be trusted. [0, 1/2] is integrated in u = log p and [1/2, 1) in
    u = log(1 - p) with 128-point Gauss-Legendre each; the tails below 1e-10 are added in closed form
    (regularised incomplete beta times the integrand's limit, which is exact to ~1e-10). In log space
    the integrand is smooth whatever r, alpha, t and the Beta shape, so this agrees with adaptive
    quadrature to ~1e-6 or better over a, b in [0.05, 3000], r up to 3000, t / alpha up to 1e7.
    Vectorised: rows x 256 nodes.
    """
    r, alpha, b, t = (np.asarray(v, dtype=float)[:, None] for v in (r, alpha, b, t))
    s = t / alpha
    log_beta = special.betaln(a, b)
    half = math.log(0.5)

    def g(p):  # expected purchases of an alive customer with dropout p, averaged over lambda
        return -np.expm1(-r * np.log1p(p * s)) / p

    # p in (0, 1/2]: below p_low the integrand equals its limit r s to ~1e-10 relative.
    p_low = _TAIL * np.minimum(1.0, 1.0 / ((r + 1.0) * s))
    lo = np.log(p_low)
    u = (half + lo) / 2 + (half - lo) / 2 * _GL_NODES
    p = np.exp(u)
    dens = np.exp(a * u + (b - 1.0) * np.log1p(-p) - log_beta)
    lower = (half - lo)[:, 0] / 2 * ((dens * g(p)) @ _GL_WEIGHTS)
    lower += (r * s)[:, 0] * special.betainc(a, b[:, 0], p_low[:, 0])
    # p in [1/2, 1): w = 1 - p, u = log w; above 1 - 1e-10 the integrand equals g(1).
    lo = math.log(_TAIL)
    u = (half + lo) / 2 + (half - lo) / 2 * _GL_NODES
    w = np.exp(u)
    dens = np.exp((a - 1.0) * np.log1p(-w) + b * u - log_beta)
    upper = (half - lo) / 2 * ((dens * g(1.0 - w)) @ _GL_WEIGHTS)
    upper += g(1.0)[:, 0] * special.betainc(b[:, 0], a, _TAIL)
    return lower + upper


def _given_alive(r, alpha, a, b, t, known_hard=None):
    """Expected purchases in (0, t] for a customer alive at 0 with lambda ~ Gamma(r, alpha), p ~ Beta(a, b).

    Closed form (FHL 2005 eq. 10 without the P(alive) factor), with z = t / (alpha + t):
        (a+b-1)/(a-1) * [1 - (alpha/(alpha+t))^r * 2F1(r, b; a+b-1; z)]
    Guard: scipy's hyp2f1 is accurate for store-sized inputs (no failure over 200k random cases with
    x <= 600, T <= 1500 days, t <= 1100 days, alpha 1-2000 days), but far outside that (t >> alpha with
    heavy buyers, large a) it returns nan or silently wrong finite values. So each value is also
    computed in the Pfaff-transformed form (a+b-1)/(a-1) * [1 - 2F1(r, a-1; a+b-1; -t/alpha)], which
    takes a different path through hyp2f1; values where the two disagree (relative 1e-6), either is
    non-finite, the result leaves the provable range [0, r t / alpha], or a is within 1e-6 of 1 (0/0 in
    the prefactor) are recomputed by :func:`_given_alive_quadrature`.

    ``known_hard`` (a mask from an earlier call at nearby parameters) skips the second, six-times
    slower hyp2f1 form: those entries go straight to quadrature, the rest keep the range checks.
    Returns (values, mask of entries that needed quadrature), both in the broadcast shape.
    """
    r, alpha, b, t = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (r, alpha, b, t)))
    upper = r * t / alpha
    with np.errstate(all="ignore"):
        factor = (a + b - 1.0) / (a - 1.0)
        z = t / (alpha + t)
        out = factor * (1.0 - np.exp(r * np.log1p(-z)) * special.hyp2f1(r, b, a + b - 1.0, z))
        bad = ~np.isfinite(out) | (out < -1e-6 * upper) | (out > upper * (1 + 1e-6))
        if known_hard is None:
            second = factor * (1.0 - special.hyp2f1(r, a - 1.0, a + b - 1.0, -t / alpha))
            bad |= ~np.isfinite(second) | (np.abs(out - second) > 1e-6 * np.abs(out) + 1e-12 * upper)
        else:
            bad |= known_hard
    if abs(a - 1.0) < 1e-6:
        bad = np.ones_like(bad)
    bad &= t > 0
    if bad.any():
        out[bad] = _given_alive_quadrature(r[bad], alpha[bad], a, b[bad], t[bad])
    return np.clip(np.where(t > 0, out, 0.0), 0.0, upper), bad


def _p_alive(params: BGNBDParams, x, tx, T):
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore"):
        log_odds_dead = (
            math.log(a) - np.log(np.where(x > 0, b + x - 1, 1.0))
            + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
        )
    return np.where(x > 0, special.expit(-log_odds_dead), 1.0)


def _conditional(params: BGNBDParams, t, x, tx, T):
    """E[Y(t) | x, t_x, T] = P(alive) * expected purchases of an alive customer with posterior parameters.

    Evaluated once per distinct (x, t_x, T): day-granular summaries repeat them a lot.
    """
    codes = _group_codes(x, tx, T)
    first = np.unique(codes, return_index=True)[1]
    ux, utx, uT = x[first], tx[first], T[first]
    given_alive, _ = _given_alive(params.r + ux, params.alpha + uT, params.a, params.b + ux, t)
    return (_p_alive(params, ux, utx, uT) * given_alive)[codes]


def p_alive(params: BGNBDParams, summary: pd.DataFrame) -> np.ndarray:
    """Probability each customer is still active at the summary's as_of day.

    BG/NBD lets customers drop out only right after a repeat purchase, so every customer with
    frequency 0 gets exactly 1. Never use p_alive alone as a churn score: rank by expected purchases
    (or expected purchases x spend) instead, which also penalises one-off buyers.
    """
    _check_unit(params, summary)
    return _p_alive(params, *_summary_arrays(summary))


def expected_purchases(params: BGNBDParams, t: float, summary: pd.DataFrame) -> np.ndarray:
    """Expected repeat purchases of each customer in the next ``t`` time units after as_of.

    Args:
        t: horizon in the summary's unit (days for ``freq='D'``), >= 0.
    Returns:
        float array aligned with ``summary`` rows.
    """
    _check_unit(params, summary)
    if t < 0:
        raise ValueError("horizon t must be >= 0")
    x, tx, T = _summary_arrays(summary)
    return _conditional(params, float(t), x, tx, T)


def unconditional_expected_purchases(params: BGNBDParams, t) -> np.ndarray:
    """Population curve E[X(t)]: expected repeat purchases in (0, t] for a randomly chosen new customer."""
    t = np.asarray(t, dtype=float)
    if (t < 0).any():
        raise ValueError("t must be >= 0")
    return _given_alive(params.r, params.alpha, params.a, params.b, t)[0]


# --------------------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------------------


class _GammaGammaLikelihood:
    """Mean negative log-likelihood of the Gamma-Gamma spend model and its gradient (log space).

    Density of a customer's mean spend m over x purchases (FHL 2005, RFM and CLV, eq. 3):
      Gamma(px+q) / (Gamma(px) Gamma(q)) * v^q m^(px-1) x^(px) / (v + x m)^(px+q)
    """

    def __init__(self, x, m):
        self.x, self.m = x, m
        self.ux, self.xi = np.unique(x, return_inverse=True)
        self.log_m = np.log(m)
        self.log_x = np.log(x)

    def __call__(self, log_theta):
        p, q, v = np.exp(log_theta)
        x, ux, xi = self.x, self.ux, self.xi
        px = p * x
        log_vxm = np.log(v + x * self.m)
        ll = (
            (special.gammaln(p * ux + q) - special.gammaln(p * ux))[xi]
            - special.gammaln(q) + q * math.log(v)
            + (px - 1) * self.log_m + px * self.log_x - (px + q) * log_vxm
        )
        dig_pxq = special.digamma(p * ux + q)[xi]
        d_p = x * (dig_pxq - special.digamma(p * ux)[xi] + self.log_m + self.log_x - log_vxm)
        d_q = dig_pxq - special.digamma(q) + math.log(v) - log_vxm
        d_v = q / v - (px + q) / (v + x * self.m)
        value = ll.sum()
        if not np.isfinite(value):
            return np.inf, np.zeros(3)
        grad = np.array([d_p.sum() * p, d_q.sum() * q, d_v.sum() * v])
        return -value / len(x), -grad / len(x)


def fit_gamma_gamma(summary: pd.DataFrame) -> GammaGammaParams:
    """Fit the Gamma-Gamma spend model on repeat buyers with positive monetary_value.

    The model assumes spend per purchase is independent of purchase frequency; check
    ``summary[['frequency', 'monetary_value']].corr()`` is small before trusting it.

    Raises:
        CLVFitError: fewer than ``MIN_REPEAT_BUYERS`` usable repeat buyers, no convergence, or
            q <= 1 (mean spend per purchase would be infinite).
    """
    if not {"frequency", "monetary_value"} <= set(summary.columns):
        raise ValueError("summary needs frequency and monetary_value columns")
    x = summary["frequency"].to_numpy(dtype=float)
    m = summary["monetary_value"].to_numpy(dtype=float)
    use = (x > 0) & (m > 0) & np.isfinite(m)
    _check_enough_repeaters(len(x), int(use.sum()), "Gamma-Gamma")
    x, m = x[use], m[use]
    scale = float(m.mean())  # money in units of mean spend: v is O(1) in any currency
    lik = _GammaGammaLikelihood(x, m / scale)
    starts = [(1.0, 3.0, 2.0), (4.0, 4.0, 1.0), (0.5, 2.0, 2.0)]
    res, at_bound = _minimise(lik, starts, ("p", "q", "v"))
    p, q, v_s = np.exp(res.x)
    if q <= 1:
        raise CLVFitError(
            f"Gamma-Gamma: fitted q = {q:.3g} <= 1 means spend per purchase has no finite mean "
            "(a few extreme baskets dominate); remove outliers or wholesale accounts and refit"
        )
    hess = _numerical_hessian(lambda th: lik(th)[1] * len(x), res.x)
    log_lik = -res.fun * len(x) - len(x) * math.log(scale)  # density of m, not of m / scale
    return GammaGammaParams(
        p=float(p), q=float(q), v=float(v_s * scale), log_likelihood=float(log_lik), n=int(len(x)),
        cov_log=_covariance(hess, ~_on_edge(res.x)), at_bound=at_bound,
    )


def _spend(p, q, v, x, m):
    return p * (v + x * m) / (p * x + q - 1)


def expected_spend(gg_params: GammaGammaParams, summary: pd.DataFrame) -> np.ndarray:
    """Expected spend per future purchase day of each customer (their own mean shrunk to the population).

    Non-repeaters get the population mean ``p v / (q - 1)``.
    """
    x = summary["frequency"].to_numpy(dtype=float)
    m = summary["monetary_value"].to_numpy(dtype=float)
    m = np.where(x > 0, m, 0.0)
    return _spend(gg_params.p, gg_params.q, gg_params.v, x, m)


def _monthly_discount(discount_rate_annual: float) -> float:
    if discount_rate_annual < 0:
        raise ValueError("discount_rate_annual must be >= 0")
    return (1.0 + discount_rate_annual) ** (1.0 / 12.0) - 1.0


def clv(
    bg: BGNBDParams,
    gg: GammaGammaParams,
    summary: pd.DataFrame,
    months: int = 12,
    discount_rate_annual: float = 0.0,
) -> np.ndarray:
    """Predicted customer value over the next ``months``: expected purchases x expected spend.

    With a discount rate, month k's expected purchases (months of 365.25/12 days) are discounted by
    (1 + d)^-k with d the monthly rate equivalent to ``discount_rate_annual``.
    """
    _check_unit(bg, summary)
    x, tx, T = _summary_arrays(summary)
    spend = expected_spend(gg, summary)
    d = _monthly_discount(discount_rate_annual)
    month = DAYS_PER_MONTH / _unit_days(bg.time_unit)
    if d == 0:
        return _conditional(bg, months * month, x, tx, T) * spend
    value = np.zeros(len(x))
    previous = np.zeros(len(x))
    for k in range(1, months + 1):  # a loop over months, vectorised over customers
        cumulative = _conditional(bg, k * month, x, tx, T)
        value += (cumulative - previous) / (1.0 + d) ** k
        previous = cumulative
    return value * spend


def score_customers(
    bg: BGNBDParams,
    gg: GammaGammaParams,
    summary: pd.DataFrame,
    discount_rate_annual: float = 0.0,
) -> pd.DataFrame:
    """The per-customer CLV columns the portal shows and exports, indexed like ``summary``.

    Columns: p_alive, expected_purchases_30d / _90d / _365d, expected_spend, clv_12m.
    """
    days = 1.0 / _unit_days(bg.time_unit)
    return pd.DataFrame(
        {
            "p_alive": p_alive(bg, summary),
            "expected_purchases_30d": expected_purchases(bg, 30 * days, summary),
            "expected_purchases_90d": expected_purchases(bg, 90 * days, summary),
            "expected_purchases_365d": expected_purchases(bg, 365 * days, summary),
            "expected_spend": expected_spend(gg, summary),
            "clv_12m": clv(bg, gg, summary, 12, discount_rate_annual),
        },
        index=summary.index,
    )


# --------------------------------------------------------------------------------------------------
# Store outlook and backtest
# --------------------------------------------------------------------------------------------------


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


def _totals(bg_vals, gg_vals, edges, x, tx, T, count, sum_m, known_hard=None):
    """Expected purchases and revenue per period summed over customer groups (+ the quadrature mask)."""
    r, alpha, a, b = bg_vals
    alive = _p_alive(BGNBDParams(r, alpha, a, b, 0.0, 0), x, tx, T)
    given_alive, hard = _given_alive(r + x, alpha + T, a, b + x, edges[1:, None], known_hard)
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
    purchases, revenue, _ = _totals(bg.values, gg.values, edges, gx, gtx, gT, count, sum_m)

    rng = np.random.default_rng(seed)
    sample = rng.choice(len(x), size=min(len(x), max_sim_customers), replace=False)
    (sx, stx, sT), scount, ssum_m = _compress(x[sample], tx[sample], T[sample], sum_of=m[sample])
    base_p, base_r, hard = _totals(bg.values, gg.values, edges, sx, stx, sT, scount, ssum_m)
    bg_draws = _draw(bg.values, bg.cov_log, n_sims, rng)
    gg_draws = _draw(gg.values, gg.cov_log, n_sims, rng)
    sims = [  # one vectorised evaluation per parameter draw
        _totals(bv, gv, edges, sx, stx, sT, scount, ssum_m, hard) for bv, gv in zip(bg_draws, gg_draws)
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


def backtest(lines: pd.DataFrame, cutoff, months: int = 6, **forecast_kwargs) -> pd.DataFrame:
    """Fit on data up to ``cutoff`` and compare the monthly forecast with what really happened.

    Only customers seen by the cutoff count on both sides (repeat purchase days, i.e. customer-days with
    positive spend, by calendar month); months are clipped to the last day in the data.

    Returns:
        :func:`forecast_monthly` columns plus actual_purchases, actual_revenue, abs_pct_error; ``attrs``
        holds mape_purchases, mape_revenue (fractions) and the fitted ``bg`` and ``gg`` parameters.
    """
    cutoff = pd.Timestamp(cutoff).normalize()
    summary = rfm_summary(lines, as_of=cutoff)
    bg = fit_bgnbd(summary)
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
    frame["abs_pct_error"] = (
        (frame["expected_purchases"] - frame["actual_purchases"]).abs()
        / frame["actual_purchases"].where(frame["actual_purchases"] > 0)
    )
    frame.attrs = {
        "mape_purchases": mape(frame["actual_purchases"], frame["expected_purchases"]),
        "mape_revenue": mape(frame["actual_revenue"], frame["expected_revenue"]),
        "bg": bg,
        "gg": gg,
    }
    return frame


# --------------------------------------------------------------------------------------------------
# Simulation (tests, benchmarks, what-if)
# --------------------------------------------------------------------------------------------------


def simulate_summary(
    bg: tuple[float, float, float, float],
    T,
    gg: tuple[float, float, float] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Draw a summary frame from the BG/NBD (+ Gamma-Gamma) model itself, exactly and vectorised.

    Each customer gets lambda ~ Gamma(r, rate alpha) and p ~ Beta(a, b); they drop out right after
    their J-th repeat purchase, J ~ Geometric(p). With N ~ Poisson(lambda T) purchase events in (0, T],
    frequency = min(N, J) and the last observed purchase is that order statistic of N uniforms on
    (0, T], i.e. recency = T * Beta(x, N - x + 1). Mean spend of x purchases is Gamma(p x, rate nu x)
    with nu ~ Gamma(q, rate v).

    Args:
        bg: (r, alpha, a, b), alpha in the unit of ``T``.
        T: array of observation lengths (one per customer).
        gg: optional (p, q, v); without it monetary_value is 0.
    """
    rng = np.random.default_rng(seed)
    r, alpha, a, b = bg
    T = np.asarray(T, dtype=float)
    n = T.size
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = np.clip(rng.beta(a, b, n), 1e-12, 1.0)
    events = rng.poisson(lam * T)
    dropout_after = rng.geometric(p)
    x = np.minimum(events, dropout_after)
    pos = x > 0
    tx = np.zeros(n)
    tx[pos] = T[pos] * rng.beta(x[pos], events[pos] - x[pos] + 1)
    monetary = np.zeros(n)
    if gg is not None:
        gp, gq, gv = gg
        nu = rng.gamma(gq, 1.0 / gv, n)
        monetary[pos] = rng.gamma(gp * x[pos], 1.0 / (nu[pos] * x[pos]))
    summary = pd.DataFrame(
        {"frequency": x.astype("int64"), "recency": tx, "T": T, "monetary_value": monetary},
        index=pd.RangeIndex(n, name="customer_id"),
    )
    summary.attrs = {"time_unit": "D"}
    return summary
