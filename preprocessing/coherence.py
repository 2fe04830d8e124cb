"""One coherent customer picture: churn risk, P(alive), expected purchases and CLV that agree.

Why this exists: the churn model answers "no purchase in the next H days?" (a classifier checked on a
temporal holdout), the purchase model answers "still a customer?" (P(alive)) and "how many purchases?".
Shown side by side they contradicted each other: BG/NBD gives P(alive) = 1 to every one-time buyer, and
on short histories (UCI: one year) even MBG/NBD cannot tell dropping out from buying slowly, so its
P(alive) stays near 1 for everyone (a -> 0 at the edge of the search box).

The rule used here, stated so it can go on the help page:

* The purchase model says how likely a customer who *is* still with us is to stay quiet for H days:
  ``q = P(no purchase in H | alive)`` (:func:`preprocessing.clv.p_quiet_if_alive`).
* The churn model says how likely they are to stay quiet, alive or not: ``c = P(no purchase in H)``.
* Both hold only if ``c = 1 - P(alive) (1 - q)``, so the P(alive) shown is the one the churn evidence
  implies: ``P(alive) = min(1, (1 - c) / (1 - q), P(alive | purchase model) when it has evidence)``
  — see :func:`reconciled_p_alive`. Expected purchases and CLV are that P(alive) times the purchase
  model's forecast for a customer who is alive, so all four numbers come from one P(alive).

:func:`coherence` measures what is left: the share of customers with churn > 0.7 and P(alive) > 0.9
(only possible for a slow buyer not yet overdue, whose quiet quarter is expected) or churn < 0.3 and
P(alive) < 0.1 (impossible under the rule above).

What the page shows as "still a customer" is not the latent P(alive) but the chance of buying again
within 12 months, ``p_return_12m = P(alive) x (1 - P(no purchase in 365 days | alive))``. Why: "alive"
is a model quantity a manager cannot check, and on a short history it is not identifiable — on UCI
Online Retail (one year) MBG/NBD's dropout goes to zero (a -> 0), so every customer is "alive" and a
one-time buyer idle 280 days read "99 % still a customer" next to "73 % no purchase in 90 days". The
12-month return chance answers a question a manager can check a year later, comes from the same
P(alive), and can never be below the 90-day purchase chance 1 - churn (a year contains the quarter).
``bench.coherence`` prints the contradiction shares for both numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from preprocessing import clv
from preprocessing.clv.bgnbd import expected_purchases_if_alive, p_quiet_if_alive
from preprocessing.clv.summary import DAYS_PER_MONTH, _unit_days

HIGH_CHURN, LOW_CHURN = 0.7, 0.3
ALIVE_HIGH, ALIVE_LOW = 0.9, 0.1


def reconciled_p_alive(churn_probability, p_quiet, p_alive_model=None) -> np.ndarray:
    """P(alive) consistent with a churn probability over the same horizon.

    Args:
        churn_probability: c, P(no purchase within H) from the churn model, per customer.
        p_quiet: q, P(no purchase within H | alive) from the purchase model (same customers, same H).
        p_alive_model: optional P(alive) from the purchase model; where it is *lower* it wins (the
            purchase model has seen a long silence the classifier cannot reach), so the result never
            claims more life than either model.
    Returns:
        float array in [0, 1]: ``min(1, (1 - c) / (1 - q), p_alive_model)``; 1 - c when q is 1
        (no information about buying), NaN where c is missing.
    """
    c = np.asarray(churn_probability, dtype=float)
    q = np.asarray(p_quiet, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        implied = np.where(q < 1.0, (1.0 - c) / (1.0 - q), 1.0 - c)
    out = np.clip(implied, 0.0, 1.0)
    if p_alive_model is not None:
        out = np.minimum(out, np.asarray(p_alive_model, dtype=float))
    return np.where(np.isnan(c), np.nan, out)


def customer_picture(
    churn_probability: pd.Series,
    bg: clv.BGNBDParams,
    gg: clv.GammaGammaParams,
    summary: pd.DataFrame,
    horizon_days: int = 90,
    discount_rate_annual: float = 0.0,
) -> pd.DataFrame:
    """The per-customer numbers a page shows together, computed from one P(alive).

    Args:
        churn_probability: ``score_churn`` output (index customer_id), horizon ``horizon_days``.
        bg, gg: fitted purchase model (BG/NBD or MBG/NBD) and Gamma-Gamma parameters.
        summary: ``rfm_summary`` as of the same day (index customer_id); customers missing from it
            (no positive-spend day, e.g. returns only) get NaN model columns.
        discount_rate_annual: as in ``clv.clv``.
    Returns:
        Indexed like ``churn_probability``: churn_probability, p_alive (reconciled), p_alive_model
        (the purchase model's own), p_return_12m (chance of at least one purchase in the next 365 days,
        from the reconciled P(alive)), expected_purchases_30d / _90d / _365d, expected_spend, clv_12m.
    """
    s = summary.reindex(summary.index.intersection(churn_probability.index))
    s.attrs = summary.attrs
    day = 1.0 / _unit_days(bg.time_unit)
    c = churn_probability.reindex(s.index).to_numpy(dtype=float)
    model_alive = clv.p_alive(bg, s)
    alive = reconciled_p_alive(c, p_quiet_if_alive(bg, horizon_days * day, s), model_alive)
    out = pd.DataFrame({"p_alive": alive, "p_alive_model": model_alive}, index=s.index)
    out["p_return_12m"] = alive * (1.0 - p_quiet_if_alive(bg, 365 * day, s))
    month = DAYS_PER_MONTH * day
    horizons = [days * day for days in (30, 90, 365)] + [k * month for k in range(1, 13)]
    if_alive = expected_purchases_if_alive(bg, horizons, s)  # one pass: customers x horizons
    for j, days in enumerate((30, 90, 365)):
        out[f"expected_purchases_{days}d"] = alive * if_alive[:, j]
    out["expected_spend"] = clv.expected_spend(gg, s)
    d = (1.0 + discount_rate_annual) ** (1.0 / 12.0) - 1.0
    value, previous = np.zeros(len(s)), np.zeros(len(s))
    for k in range(1, 13):  # month by month (vectorised over customers), as clv.clv discounts
        cumulative = alive * if_alive[:, 2 + k]
        value += (cumulative - previous) / (1.0 + d) ** k
        previous = cumulative
    out["clv_12m"] = value * out["expected_spend"].to_numpy()
    out = out.reindex(churn_probability.index)
    out.insert(0, "churn_probability", churn_probability.astype(float))
    return out


def coherence(
    frame: pd.DataFrame,
    column: str = "p_alive",
    high: float = HIGH_CHURN,
    low: float = LOW_CHURN,
    alive_high: float = ALIVE_HIGH,
    alive_low: float = ALIVE_LOW,
) -> dict:
    """Shares of scored customers whose churn risk and P(alive) contradict each other.

    Args:
        frame: ``churn_probability`` and the life measure ``column`` per customer (``p_alive``, the
            model's latent one, or ``p_return_12m``, the one the page shows); rows missing either are
            not scored.
    Returns:
        {"n": scored customers, "high_churn_alive": share with churn > high and P(alive) > alive_high,
        "low_churn_dead": share with churn < low and P(alive) < alive_low, "contradictions": their sum}.
    """
    c = frame["churn_probability"].to_numpy(dtype=float)
    a = frame[column].to_numpy(dtype=float)
    scored = ~(np.isnan(c) | np.isnan(a))
    n = int(scored.sum())
    hi = int(((c > high) & (a > alive_high) & scored).sum())
    lo = int(((c < low) & (a < alive_low) & scored).sum())
    share = (lambda k: k / n) if n else (lambda k: float("nan"))
    return {"n": n, "high_churn_alive": share(hi), "low_churn_dead": share(lo), "contradictions": share(hi + lo)}
