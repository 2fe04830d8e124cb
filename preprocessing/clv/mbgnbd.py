"""Modified BG/NBD: BG/NBD where the customer may also drop out right after the *first* purchase.

Batislam, Kok & Bayhan (2007), "Empirical validation and comparison of models for customer base
analysis". Purchase rate lambda ~ Gamma(r, alpha) while alive; at time 0 and after each repeat
purchase the customer drops out with probability p ~ Beta(a, b). Why we use it: BG/NBD gives
P(alive) = 1 to everyone who never came back, so a one-time buyer idle for a year shows "100 % still a
customer" next to a high churn risk. MBG/NBD gives them a P(alive) that falls with time.

The predictions (``p_alive``, ``expected_purchases``, ``unconditional_expected_purchases``, ``clv``,
``forecast_monthly``) are the functions of ``preprocessing.clv.bgnbd`` and ``value``: they read
``params.model`` and use the modified closed forms for an :class:`MBGNBDParams`. This module only fits.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import special

from preprocessing.clv.bgnbd import fit_bgnbd
from preprocessing.clv.fitting import (
    _compress,
    fit_purchase_counts,
)
from preprocessing.clv.params import BGNBDParams, MBGNBDParams

MODELS = ("mbgnbd", "bgnbd")
DEFAULT_MODEL = "mbgnbd"
"""The purchase model ``fit_purchase_model`` uses unless told otherwise (see its docstring for why)."""


class _MBGNBDLikelihood:
    """Mean negative log-likelihood of MBG/NBD and its gradient in log-parameter space.

    Per customer (Batislam et al. 2007), with A = Gamma(r+x) alpha^r / Gamma(r):
      L = A [ B(a, b+x+1)/B(a, b) (alpha+T)^-(r+x) + B(a+1, b+x)/B(a, b) (alpha+t_x)^-(r+x) ]
    The second term (dropped out right after the last purchase) exists for x = 0 too: that is the
    modification. Evaluated as log A + logaddexp(term1, term2) with betaln/gammaln.
    """

    def __init__(self, x, tx, T):
        (self.x, self.tx, self.T), self.w = _compress(x, tx, T)
        self.ux, self.xi = np.unique(self.x, return_inverse=True)
        self.total = self.w.sum()

    def __call__(self, log_theta):
        r, alpha, a, b = np.exp(log_theta)
        ux, xi, x = self.ux, self.xi, self.x
        g_rx = (special.gammaln(r + ux) - special.gammaln(r))[xi]
        log_aT = np.log(alpha + self.T)
        log_atx = np.log(alpha + self.tx)
        t1 = special.betaln(a, b + ux + 1)[xi] - (r + x) * log_aT
        t2 = special.betaln(a + 1, b + ux)[xi] - (r + x) * log_atx
        lse = np.logaddexp(t1, t2)
        ll = g_rx + r * math.log(alpha) - special.betaln(a, b) + lse
        w1 = np.exp(t1 - lse)
        w2 = np.exp(t2 - lse)
        dig_abx = special.digamma(a + b + ux + 1)[xi]
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
            + w1 * (special.digamma(b + ux + 1)[xi] - dig_abx)
            + w2 * (special.digamma(b + ux)[xi] - dig_abx)
        )
        w = self.w
        grad = np.array([w @ d_r * r, w @ d_alpha * alpha, w @ d_a * a, w @ d_b * b])
        value = w @ ll
        if not np.isfinite(value):
            return np.inf, np.zeros(4)
        return -value / self.total, -grad / self.total


def fit_mbgnbd(summary: pd.DataFrame) -> MBGNBDParams:
    """Fit MBG/NBD by maximum likelihood to an :func:`rfm_summary` frame.

    Raises:
        CLVFitError: no customers, nobody repeats, fewer than ``MIN_REPEAT_BUYERS`` repeat buyers, or
            the optimiser does not converge.
    """
    return fit_purchase_counts(summary, _MBGNBDLikelihood, MBGNBDParams, "MBG/NBD")


def fit_purchase_model(summary: pd.DataFrame, model: str = DEFAULT_MODEL) -> BGNBDParams:
    """Fit the purchase-count model the portal uses: ``"mbgnbd"`` (default) or ``"bgnbd"``.

    Why MBG/NBD by default: on the demo store and on UCI Online Retail it has the higher
    log-likelihood (same four parameters) and, unlike BG/NBD, a P(alive) that means something for
    one-time buyers, so P(alive) and the churn risk shown beside it stop contradicting each other
    (``bench/coherence.py`` measures both). Both return a ``BGNBDParams`` (MBG/NBD: the subclass
    ``MBGNBDParams``), which every prediction function accepts.
    """
    if model == "mbgnbd":
        return fit_mbgnbd(summary)
    if model == "bgnbd":
        return fit_bgnbd(summary)
    raise ValueError(f"model must be one of {MODELS}, not {model!r}")
