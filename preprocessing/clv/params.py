"""What a CLV fit produces, or why it cannot: the fitted parameter sets and the fit error.

The parameter classes are pickled into ``Models/clv_model.pkl`` (``{"bgnbd": BGNBDParams,
"gamma_gamma": GammaGammaParams}``; the ``"bgnbd"`` entry may be an ``MBGNBDParams``, a subclass).
Models saved before the package split name them
``preprocessing.clv.BGNBDParams`` / ``GammaGammaParams``; the package re-exports both, so those
pickles still load.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

    @property
    def model(self) -> str:
        """Which purchase model these parameters belong to: ``"bgnbd"`` here, ``"mbgnbd"`` for the subclass."""
        return "bgnbd"


@dataclass(frozen=True)
class MBGNBDParams(BGNBDParams):
    """Fitted *modified* BG/NBD parameters (Batislam, Kok & Bayhan 2007): same fields as BG/NBD.

    The customer may also drop out at time 0 (right after the first purchase), with the same
    p ~ Beta(a, b) as after every repeat purchase, so one-time buyers get a P(alive) below 1 that
    falls the longer they stay away. A subclass, so code written for ``BGNBDParams`` (unit checks,
    ``values``, ``std_errors``, pickles) keeps working; the prediction functions of
    ``preprocessing.clv`` switch their closed forms on :attr:`model`.
    """

    @property
    def model(self) -> str:
        """``"mbgnbd"``: the prediction functions use the modified closed forms."""
        return "mbgnbd"


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
