"""Maximum-likelihood machinery shared by the BG/NBD, MBG/NBD and Gamma-Gamma fits.

Parameters are estimated on log scale with L-BFGS-B inside a search box; the inverse of the numerical
Hessian of the negative log-likelihood (log space) is their asymptotic covariance, which drives the
forecast intervals. Rows with identical statistics are collapsed first (daily data repeat them a lot).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize
from threadpoolctl import threadpool_limits  # installed with scikit-learn

from preprocessing.clv.params import CLVFitError
from preprocessing.clv.summary import _summary_arrays

MIN_REPEAT_BUYERS = 20

# Parameter search box in *scaled* units (times divided by their mean, money by its mean), so the same
# box fits stores that count in days or weeks, in pounds or in yen. An estimate on the box edge means
# the likelihood keeps rising towards a limiting case of the model (reported in ``at_bound``).
_LOG_BOUND = math.log(1e4)


def _compress(*columns: np.ndarray, sum_of: np.ndarray | None = None):
    """Identical rows collapsed to (unique columns, counts[, sums of ``sum_of`` per row group]).

    Exact, and worth it: daily data repeats (frequency, recency, T) a lot.
    """
    codes = _group_codes(*columns, small=0)  # fitting: always collapse (the likelihood's sums)
    counts = np.bincount(codes).astype(float)
    unique = [np.empty(len(counts)) for _ in columns]
    for u, c in zip(unique, columns):
        u[codes] = c
    if sum_of is None:
        return unique, counts
    return unique, counts, np.bincount(codes, weights=sum_of, minlength=len(counts))


SMALL_GROUPING = 512


def _group_codes(*columns: np.ndarray, small: int = SMALL_GROUPING) -> np.ndarray:
    """Group number of each row's combination of values (hash-based, first-seen order).

    Below ``small`` rows (default ``SMALL_GROUPING``) every row is its own group: grouping exists to save work on large
    inputs, and for a handful of customers (an incremental rescore) pandas' groupby costs more than it
    saves. The values computed per group are elementwise, so the results are the same either way.
    """
    n = len(columns[0]) if columns else 0
    if n < small:
        return np.arange(n)
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
                neg_ll_grad,
                np.log(start),
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
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


def fit_purchase_counts(summary: pd.DataFrame, likelihood, params_class, label: str):
    """Fit a four-parameter purchase-count model (BG/NBD or MBG/NBD: r, alpha, a, b) by maximum likelihood.

    Args:
        summary: an ``rfm_summary`` frame.
        likelihood: class taking (x, t_x, T) whose instances return (mean negative log-likelihood,
            gradient) in log-parameter space and carry ``total`` (number of customers).
        params_class: the parameters type to return (``BGNBDParams`` or ``MBGNBDParams``).
        label: the model's name in error messages.
    Raises:
        CLVFitError: no customers, nobody repeats, fewer than ``MIN_REPEAT_BUYERS`` repeat buyers, or
            the optimiser does not converge.
    """
    x, tx, T = _summary_arrays(summary)
    n = len(x)
    n_repeat = int((x > 0).sum())
    _check_enough_repeaters(n, n_repeat, label)
    # Work in time scaled by mean T so alpha is O(1) whatever the unit; undone at the end.
    scale = float(T.mean())
    lik = likelihood(x, tx / scale, T / scale)
    # Start: E[lambda] = r/alpha matches the observed repeat rate; dropout p around 0.25.
    rate = max(x.sum() / T.sum() * scale, 1e-6)
    starts = [(1.0, 1.0 / rate, 1.0, 3.0), (0.25, 0.25 / rate, 0.8, 2.5), (3.0, 3.0 / rate, 2.0, 10.0)]
    res, at_bound = _minimise(lik, starts, ("r", "alpha", "a", "b"))
    r, alpha_s, a, b = np.exp(res.x)
    hess = _numerical_hessian(lambda th: lik(th)[1] * lik.total, res.x)
    # The time rescaling multiplies the likelihood by scale^-x per customer (it is a density in time).
    log_lik = -res.fun * lik.total - x.sum() * math.log(scale)
    return params_class(
        r=float(r),
        alpha=float(alpha_s * scale),
        a=float(a),
        b=float(b),
        log_likelihood=float(log_lik),
        n=n,
        n_repeat=n_repeat,
        time_unit=summary.attrs.get("time_unit", "D"),
        cov_log=_covariance(hess, ~_on_edge(res.x)),
        at_bound=at_bound,
    )
