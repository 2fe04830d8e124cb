"""Gamma-Gamma: how much each customer will spend per future purchase day.

Spend per purchase ~ Gamma(p, nu) with nu ~ Gamma(q, v) across customers (Fader, Hardie & Lee 2005,
"RFM and CLV: using iso-value curves"): a customer's own mean spend is shrunk towards the population
mean, the more so the fewer purchases it rests on. Fitted on repeat buyers only.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import special

from preprocessing.clv.fitting import (
    _check_enough_repeaters,
    _covariance,
    _minimise,
    _numerical_hessian,
    _on_edge,
)
from preprocessing.clv.params import CLVFitError, GammaGammaParams


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
            - special.gammaln(q)
            + q * math.log(v)
            + (px - 1) * self.log_m
            + px * self.log_x
            - (px + q) * log_vxm
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
        p=float(p),
        q=float(q),
        v=float(v_s * scale),
        log_likelihood=float(log_lik),
        n=int(len(x)),
        cov_log=_covariance(hess, ~_on_edge(res.x)),
        at_bound=at_bound,
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
