"""Modified BG/NBD: parameter recovery, closed forms against the `lifetimes` reference, Monte-Carlo."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from preprocessing import clv
from preprocessing.clv.mbgnbd import _MBGNBDLikelihood

# Reference numbers produced by lifetimes 0.11.3 (ModifiedBetaGeoFitter; numpy 2.4.6, pandas 3.1.1,
# scipy 1.17.1) in a throw-away venv — lifetimes is not a dependency of Loyalist.
REF_PARAMS = (0.6, 25.0, 0.8, 3.0)
REF_ROWS = [
    (0, 0.0, 30.0),
    (0, 0.0, 365.0),
    (1, 10.0, 200.0),
    (3, 150.0, 160.0),
    (3, 40.0, 300.0),
    (12, 400.0, 410.0),
    (25, 280.0, 700.0),
]
REF_P_ALIVE = [
    0.7002904678865947,
    0.4190664915651434,
    0.20298104960030625,
    0.8599472070741623,
    0.022333660534481624,
    0.933277308968584,
    8.269722943105652e-09,
]
REF_COND_90 = [
    0.5798869144592348,
    0.05634143636960334,
    0.12160991971617409,
    1.3594706267485623,
    0.020946747970335862,
    2.2847939637368806,
    2.5187916788410002e-08,
]
REF_COND_365 = [
    1.7525480688628097,
    0.21152099183160122,
    0.42224418237481365,
    4.412338117091725,
    0.07319405288539928,
    7.938717400962822,
    9.138316902523055e-08,
]
REF_UNCOND = {30.0: 0.49819477665562284, 365.0: 3.3380690141131972}
# On _ref_sample(): lifetimes' log-likelihood at REF_PARAMS and its own maximum-likelihood fit.
REF_LL_AT_PARAMS = -33172.09276573231
REF_FIT = {"r": 0.6521325278029473, "alpha": 27.030082549605908, "a": 0.7175884650363553, "b": 2.381776002783341}


def _ref_sample() -> pd.DataFrame:
    """The simulated sample the reference fit was run on (whole-day recency, as rfm_summary gives)."""
    T = np.floor(np.random.default_rng(7).uniform(30, 400, 3000))
    s = clv.simulate_summary((0.6, 25.0, 0.8, 3.0), T, seed=11, model="mbgnbd")
    s["recency"] = np.floor(s["recency"])
    return s


def _rows(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=None if isinstance(rows, dict) else ["frequency", "recency", "T"])
    frame.attrs = {"time_unit": "D"}
    return frame


def _params(values=REF_PARAMS) -> clv.MBGNBDParams:
    return clv.MBGNBDParams(*values, log_likelihood=0.0, n=0)


def test_closed_forms_match_lifetimes():
    rows, params = _rows(REF_ROWS), _params()
    np.testing.assert_allclose(clv.p_alive(params, rows), REF_P_ALIVE, rtol=1e-9)
    np.testing.assert_allclose(clv.expected_purchases(params, 90, rows), REF_COND_90, rtol=1e-8)
    np.testing.assert_allclose(clv.expected_purchases(params, 365, rows), REF_COND_365, rtol=1e-8)
    np.testing.assert_allclose(
        clv.unconditional_expected_purchases(params, [30.0, 365.0]), list(REF_UNCOND.values()), rtol=1e-9
    )


def test_likelihood_and_fit_match_lifetimes():
    sample = _ref_sample()
    x, tx, T = (sample[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    lik = _MBGNBDLikelihood(x, tx, T)
    assert -lik(np.log(REF_PARAMS))[0] * lik.total == pytest.approx(REF_LL_AT_PARAMS, rel=1e-10)
    fit = clv.fit_mbgnbd(sample)
    for name, value in REF_FIT.items():
        assert getattr(fit, name) == pytest.approx(value, rel=1e-4)
    assert fit.log_likelihood >= REF_LL_AT_PARAMS  # the maximum beats the true parameters


def test_gradient_matches_finite_differences():
    sample = _ref_sample()
    lik = _MBGNBDLikelihood(*(sample[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T")))
    theta = np.log([0.7, 30.0, 0.9, 2.0])
    _, grad = lik(theta)
    numeric = [(lik(theta + e)[0] - lik(theta - e)[0]) / 2e-6 for e in np.eye(4) * 1e-6]
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-8)


def test_recovers_parameters_from_simulated_customers():
    true = (0.5, 40.0, 0.7, 2.5)
    T = np.random.default_rng(1).uniform(180, 540, 20_000)
    fit = clv.fit_mbgnbd(clv.simulate_summary(true, T, seed=3, model="mbgnbd"))
    se = fit.std_errors()
    for name, value in zip(("r", "alpha", "a", "b"), true):
        assert abs(getattr(fit, name) - value) < 3 * se[name], name
    assert isinstance(fit, clv.BGNBDParams) and fit.model == "mbgnbd"


def test_p_alive_and_expectations_agree_with_monte_carlo():
    true = (0.5, 40.0, 0.7, 2.5)
    params = _params(true)
    T = np.random.default_rng(2).uniform(30, 400, 200_000)
    sim = clv.simulate_summary(true, T, seed=5, model="mbgnbd", truth=True)
    p = clv.p_alive(params, sim)
    # Calibrated: in each P(alive) decile the share really alive matches the mean prediction.
    decile = pd.qcut(p, 10, labels=False, duplicates="drop")
    by = pd.DataFrame({"p": p, "alive": sim["alive"]}).groupby(decile).mean()
    np.testing.assert_allclose(by["alive"], by["p"], atol=0.01)
    one_timers = sim["frequency"].to_numpy() == 0
    assert p[one_timers].mean() == pytest.approx(sim["alive"][one_timers].mean(), abs=0.005)
    # Unconditional E[X(t)]: the mean frequency of customers observed for exactly t days.
    for t in (30.0, 365.0):
        drawn = clv.simulate_summary(true, np.full(100_000, t), seed=9, model="mbgnbd")
        expected = clv.unconditional_expected_purchases(params, t)
        assert drawn["frequency"].mean() == pytest.approx(expected, rel=0.02)


def test_conditional_expectation_agrees_with_monte_carlo():
    """Customers seen for 300 days, then 90 more: their purchases in the extra days match the forecast."""
    r, alpha, a, b = true = (0.5, 40.0, 0.7, 2.5)
    rng = np.random.default_rng(4)
    n = 300_000
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    allowed = rng.geometric(p) - 1  # MBG/NBD: may drop out right after the first purchase
    before, during = rng.poisson(lam * 300.0), rng.poisson(lam * 90.0)
    x = np.minimum(before, allowed)
    tx = np.zeros(n)
    tx[x > 0] = 300.0 * rng.beta(x[x > 0], before[x > 0] - x[x > 0] + 1)
    future = np.minimum(before + during, allowed) - x
    summary = _rows({"frequency": x, "recency": tx, "T": np.full(n, 300.0)})
    predicted = clv.expected_purchases(_params(true), 90, summary)
    assert predicted.mean() == pytest.approx(future.mean(), rel=0.02)
    for group in (x == 0, (x > 0) & (x < 5), x >= 5):  # and by how much they had bought
        assert predicted[group].mean() == pytest.approx(future[group].mean(), rel=0.04)


def test_one_time_buyers_fade_and_bgnbd_keeps_them_alive():
    rows = _rows([(0, 0.0, 10.0), (0, 0.0, 100.0), (0, 0.0, 400.0)])
    mbg = clv.p_alive(_params(), rows)
    assert mbg[0] > mbg[1] > mbg[2] and mbg[2] < 0.5
    bg = clv.BGNBDParams(*REF_PARAMS, log_likelihood=0.0, n=0)
    np.testing.assert_array_equal(clv.p_alive(bg, rows), 1.0)


def test_bgnbd_pickles_still_load_and_score():
    bg = clv.BGNBDParams(0.24, 30.9, 0.79, 2.43, log_likelihood=-1.0, n=10)
    again = pickle.loads(pickle.dumps(bg))
    assert again == bg and again.model == "bgnbd"
    mbg = pickle.loads(pickle.dumps(_params()))
    assert mbg.model == "mbgnbd"


def test_fit_purchase_model_defaults_to_mbgnbd_and_scores():
    sample = _ref_sample()
    sample["monetary_value"] = np.where(sample["frequency"] > 0, 20.0, 0.0)
    fitted = clv.fit_purchase_model(sample)
    assert clv.DEFAULT_MODEL == "mbgnbd" and fitted.model == "mbgnbd"
    assert clv.fit_purchase_model(sample, model="bgnbd").model == "bgnbd"
    with pytest.raises(ValueError):
        clv.fit_purchase_model(sample, model="pareto")
    gg = clv.GammaGammaParams(6.25, 3.74, 15.44, log_likelihood=0.0, n=0)
    scores = clv.score_customers(fitted, gg, sample)
    np.testing.assert_allclose(scores["p_alive"], clv.p_alive(fitted, sample))
    assert (scores["clv_12m"] >= 0).all()
    sample.attrs["as_of"] = pd.Timestamp("2024-12-31")
    frame = clv.forecast_monthly(fitted, gg, sample, months=3, n_sims=20)
    assert (frame["expected_purchases"] > 0).all()
