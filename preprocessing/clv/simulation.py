"""Summaries drawn from the (M)BG/NBD (+ Gamma-Gamma) model itself: for tests, benchmarks and what-ifs.

A fit on a simulated summary should recover the parameters it was drawn with; that is how the tests
and ``bench/clv.py`` check the estimators without real data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate_summary(
    bg: tuple[float, float, float, float],
    T,
    gg: tuple[float, float, float] | None = None,
    seed: int = 0,
    model: str = "bgnbd",
    truth: bool = False,
) -> pd.DataFrame:
    """Draw a summary frame from the BG/NBD (+ Gamma-Gamma) model itself, exactly and vectorised.

    Each customer gets lambda ~ Gamma(r, rate alpha) and p ~ Beta(a, b); they drop out right after
    their J-th repeat purchase, J ~ Geometric(p) on {1, 2, ...}; with ``model="mbgnbd"`` they may also
    drop out right after the first purchase, so J ~ Geometric(p) on {0, 1, ...} (Batislam et al. 2007).
    With N ~ Poisson(lambda T) purchase events in (0, T],
    frequency = min(N, J) and the last observed purchase is that order statistic of N uniforms on
    (0, T], i.e. recency = T * Beta(x, N - x + 1). Mean spend of x purchases is Gamma(p x, rate nu x)
    with nu ~ Gamma(q, rate v).

    Args:
        bg: (r, alpha, a, b), alpha in the unit of ``T``.
        T: array of observation lengths (one per customer).
        gg: optional (p, q, v); without it monetary_value is 0.
        model: ``"bgnbd"`` or ``"mbgnbd"``.
        truth: also return ``alive`` (bool: the customer had not dropped out by T), what P(alive)
            estimates, for Monte-Carlo checks of ``p_alive``.
    """
    if model not in ("bgnbd", "mbgnbd"):
        raise ValueError(f"model must be 'bgnbd' or 'mbgnbd', not {model!r}")
    rng = np.random.default_rng(seed)
    r, alpha, a, b = bg
    T = np.asarray(T, dtype=float)
    n = T.size
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = np.clip(rng.beta(a, b, n), 1e-12, 1.0)
    events = rng.poisson(lam * T)
    dropout_after = rng.geometric(p) - (1 if model == "mbgnbd" else 0)
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
    if truth:
        summary["alive"] = events < dropout_after  # the dropout point lies beyond the purchases made by T
    summary.attrs = {"time_unit": "D"}
    return summary
