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

The package, by meaning (each module can be read on its own):

* ``summary``: ``rfm_summary`` from lines, ``rfm_summary_from_day_totals`` from a database's totals;
* ``params``: ``BGNBDParams``, ``MBGNBDParams``, ``GammaGammaParams`` (what is pickled) and ``CLVFitError``;
* ``fitting``: the maximum-likelihood machinery both models share;
* ``bgnbd``: ``fit_bgnbd``, ``p_alive``, ``expected_purchases``, ``unconditional_expected_purchases``
  (closed forms for both BG/NBD and the modified MBG/NBD, chosen by the parameters' class);
* ``mbgnbd``: ``fit_mbgnbd`` and ``fit_purchase_model(summary, model="mbgnbd")`` (the default model:
  one-time buyers get a meaningful P(alive));
* ``gamma_gamma``: ``fit_gamma_gamma``, ``expected_spend``;
* ``value``: ``clv`` and ``score_customers`` (the per-customer columns the portal keeps);
* ``outlook``: ``forecast_monthly``, ``backtest``, ``mape`` (the store outlook and its check);
* ``simulation``: ``simulate_summary`` (draws from the model itself, for tests and benchmarks).

Callers import the package: ``from preprocessing import clv`` then ``clv.fit_bgnbd(...)``. Names are
looked up where they are defined, so a test that replaces a function must patch the module that
*calls* it (``clv.backtest`` calls ``preprocessing.clv.outlook.fit_bgnbd``).
"""

from preprocessing.clv.bgnbd import (
    expected_purchases,
    expected_purchases_if_alive,
    fit_bgnbd,
    p_alive,
    p_quiet_if_alive,
    unconditional_expected_purchases,
)
from preprocessing.clv.fitting import MIN_REPEAT_BUYERS
from preprocessing.clv.gamma_gamma import expected_spend, fit_gamma_gamma
from preprocessing.clv.mbgnbd import DEFAULT_MODEL, MODELS, fit_mbgnbd, fit_purchase_model
from preprocessing.clv.outlook import backtest, forecast_monthly, mape
from preprocessing.clv.params import BGNBDParams, CLVFitError, GammaGammaParams, MBGNBDParams
from preprocessing.clv.simulation import simulate_summary

# The purchase-day rule portal.services.scores.aggregates mirrors in SQL (its docstring names it here).
from preprocessing.clv.summary import (
    DAYS_PER_MONTH,
    _purchase_days,  # noqa: F401
    rfm_summary,
    rfm_summary_from_day_totals,
)
from preprocessing.clv.value import clv, score_customers

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "MBGNBDParams",
    "fit_mbgnbd",
    "fit_purchase_model",
    "DAYS_PER_MONTH",
    "MIN_REPEAT_BUYERS",
    "BGNBDParams",
    "CLVFitError",
    "GammaGammaParams",
    "backtest",
    "clv",
    "expected_purchases",
    "expected_spend",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "forecast_monthly",
    "mape",
    "p_alive",
    "rfm_summary",
    "rfm_summary_from_day_totals",
    "score_customers",
    "simulate_summary",
    "unconditional_expected_purchases",
    "p_quiet_if_alive",
    "expected_purchases_if_alive",
]
