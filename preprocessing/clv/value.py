"""Customer lifetime value: BG/NBD expected purchases times Gamma-Gamma expected spend.

``clv`` values each customer over the next months (optionally discounted month by month);
``score_customers`` gives the per-customer columns the portal stores, shows and exports.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from preprocessing.clv.bgnbd import _conditional, expected_purchases, p_alive
from preprocessing.clv.gamma_gamma import expected_spend
from preprocessing.clv.params import BGNBDParams, GammaGammaParams
from preprocessing.clv.summary import DAYS_PER_MONTH, _check_unit, _summary_arrays, _unit_days


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
