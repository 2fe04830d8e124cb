"""CLV: BG/NBD + Gamma-Gamma summary, fits, predictions, outlook and backtest."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

from preprocessing import clv
from preprocessing.clv import BGNBDParams, CLVFitError, GammaGammaParams

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "online_retail_uci.csv.gz"

# Published CDNOW estimates (Fader, Hardie & Lee 2005), time in weeks; in days alpha is x 7.
CDNOW_WEEKS = (0.243, 4.414, 0.793, 2.426)
CDNOW_DAYS = (0.243, 4.414 * 7, 0.793, 2.426)
CDNOW_GG = (6.25, 3.74, 15.44)


def _lines(rows):
    frame = pd.DataFrame(rows, columns=["customer_id", "transaction_id", "purchase_date", "total_amount"])
    frame["purchase_date"] = pd.to_datetime(frame["purchase_date"])
    frame["total_amount"] = frame["total_amount"].astype(float)
    return frame


def _summary(rows, unit="D"):
    frame = pd.DataFrame(rows, columns=["frequency", "recency", "T", "monetary_value"])
    frame.attrs = {"time_unit": unit, "as_of": pd.Timestamp("2020-12-31")}
    return frame


def _reference_given_alive(r, alpha, a, b, t):
    """Independent check: integrate (1 - (alpha/(alpha+p t))^r)/p against the Beta(a, b) density."""

    def integrand(u):  # u = log p, so the Beta density's spike at 0 is spread out
        p = math.exp(u)
        g = -math.expm1(-r * math.log1p(p * t / alpha)) / p
        return g * stats.beta.pdf(p, a, b) * p

    low = math.log(1e-14 * min(1.0, alpha / ((r + 1) * t)))
    head = (r * t / alpha) * special.betainc(a, b, math.exp(low))
    return head + integrate.quad(integrand, low, 0.0, limit=500, epsrel=1e-11, epsabs=0)[0]


# ---------------------------------------------------------------- summary


def test_rfm_summary_counts_repeat_purchase_days_and_mean_repeat_spend():
    lines = _lines(
        [
            ("A", "t1", "2020-01-01 09:00", 10.0),
            ("A", "t2", "2020-01-01 17:00", 5.0),  # same day: one purchase day worth 15
            ("A", "t3", "2020-01-11 10:00", 20.0),
            ("A", "t4", "2020-01-21 10:00", 40.0),
            ("A", "t5", "2020-01-25 10:00", -40.0),  # a return is not a purchase
            ("A", "t6", "2020-02-15 10:00", 99.0),  # after as_of: ignored
            ("B", "t7", "2020-01-30 12:00", 7.0),
            (None, "t8", "2020-01-30 12:00", 50.0),  # anonymous sale
        ]
    )
    summary = clv.rfm_summary(lines, as_of="2020-01-31")
    assert list(summary.index) == ["A", "B"]
    a, b = summary.loc["A"], summary.loc["B"]
    assert a["frequency"] == 2  # 3 purchase days - 1
    assert a["recency"] == 20.0  # Jan 1 -> Jan 21
    assert a["T"] == 30.0  # Jan 1 -> Jan 31
    assert a["monetary_value"] == pytest.approx(30.0)  # (20 + 40) / 2, first day excluded
    assert (b["frequency"], b["recency"], b["T"], b["monetary_value"]) == (0, 0.0, 1.0, 0.0)
    assert summary.attrs["as_of"] == pd.Timestamp("2020-01-31")


def test_rfm_summary_defaults_to_latest_day_and_counts_that_whole_day():
    lines = _lines(
        [
            ("A", "t1", "2020-01-01 09:00", 10.0),
            ("A", "t2", "2020-01-08 18:30", 10.0),
            ("B", "t3", "2020-01-08 08:00", 10.0),
        ]
    )
    summary = clv.rfm_summary(lines)
    assert summary.attrs["as_of"] == pd.Timestamp("2020-01-08")
    assert summary.loc["A", "frequency"] == 1 and summary.loc["A", "T"] == 7.0
    assert summary.loc["B", "T"] == 0.0


def test_rfm_summary_in_weeks_scales_times_but_still_counts_days():
    lines = _lines([("A", "t1", "2020-01-01", 1.0), ("A", "t2", "2020-01-02", 1.0), ("A", "t3", "2020-01-15", 1.0)])
    summary = clv.rfm_summary(lines, as_of="2020-01-29", freq="W")
    assert summary.loc["A", "frequency"] == 2
    assert summary.loc["A", "recency"] == pytest.approx(2.0)
    assert summary.loc["A", "T"] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="freq"):
        clv.rfm_summary(lines, freq="M")


# ---------------------------------------------------------------- closed forms


def test_population_curve_matches_hardie_cdnow_values():
    # E[X(t)] published in Hardie's BG/NBD spreadsheet for the CDNOW fit. The published parameters are
    # rounded to 3 decimals (r to 0.2 %), hence rtol 0.5 %; the tight check is the next test.
    params = BGNBDParams(*CDNOW_WEEKS, log_likelihood=0.0, n=0, time_unit="W")
    t = np.array([0.1429, 1.0, 3.0, 31.8571, 32.0, 78.0])
    published = np.array([0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576])
    np.testing.assert_allclose(clv.unconditional_expected_purchases(params, t), published, rtol=5e-3)


def test_population_curve_matches_numerical_integration():
    params = BGNBDParams(*CDNOW_WEEKS, log_likelihood=0.0, n=0, time_unit="W")
    for t in (0.5, 13.0, 39.0, 78.0, 520.0):
        expected = _reference_given_alive(*CDNOW_WEEKS, t)
        assert clv.unconditional_expected_purchases(params, t) == pytest.approx(expected, rel=1e-8)


def test_conditional_expectation_matches_published_cdnow_customer():
    # FHL 2005 worked example: x = 2, t_x = 30.43, T = 38.86 weeks -> 1.226 purchases in the next 39 weeks.
    params = BGNBDParams(*CDNOW_WEEKS, log_likelihood=0.0, n=0, time_unit="W")
    summary = _summary([(2, 30.43, 38.86, 0.0)], unit="W")
    assert clv.expected_purchases(params, 39, summary)[0] == pytest.approx(1.226, abs=1e-3)


@pytest.mark.parametrize(
    "x, tx, T, t",
    [
        (0, 0.0, 200.0, 90.0),
        (3, 150.0, 300.0, 365.0),
        (40, 290.0, 300.0, 30.0),
        # heavy buyers / long horizons: hyp2f1 returns nan or wrong values here, the guard must catch it
        (200, 300.0, 300.0, 1e4),
        (1000, 399.0, 400.0, 1e4),
        (50, 10.0, 400.0, 1e6),
    ],
)
def test_conditional_expectation_matches_numerical_integration(x, tx, T, t):
    r, alpha, a, b = CDNOW_DAYS
    params = BGNBDParams(r, alpha, a, b, 0.0, 0)
    got = clv.expected_purchases(params, t, _summary([(x, tx, T, 0.0)]))[0]
    alive = clv.p_alive(params, _summary([(x, tx, T, 0.0)]))[0]
    expected = alive * _reference_given_alive(r + x, alpha + T, a, b + x, t)
    assert got == pytest.approx(expected, rel=1e-6)


def test_expectation_is_finite_when_a_is_exactly_one():
    params = BGNBDParams(0.5, 20.0, 1.0, 3.0, 0.0, 0)
    got = clv.expected_purchases(params, 90.0, _summary([(4, 80.0, 100.0, 0.0)]))[0]
    alive = clv.p_alive(params, _summary([(4, 80.0, 100.0, 0.0)]))[0]
    assert got == pytest.approx(alive * _reference_given_alive(4.5, 120.0, 1.0, 7.0, 90.0), rel=1e-6)


def test_p_alive_is_one_without_repeat_purchases_and_falls_with_silence():
    params = BGNBDParams(*CDNOW_DAYS, 0.0, 0)
    summary = _summary([(0, 0.0, 300.0, 0.0), (5, 290.0, 300.0, 0.0), (5, 60.0, 300.0, 0.0)])
    alive = clv.p_alive(params, summary)
    assert alive[0] == 1.0
    assert 0 < alive[2] < alive[1] < 1


def test_simulator_agrees_with_the_population_curve():
    # 20,000 customers watched for exactly 300 days: their mean repeat count must match E[X(300)].
    params = BGNBDParams(*CDNOW_DAYS, 0.0, 0)
    sim = clv.simulate_summary(CDNOW_DAYS, np.full(20_000, 300.0), seed=3)
    mean, se = sim["frequency"].mean(), sim["frequency"].std() / math.sqrt(len(sim))
    assert abs(mean - clv.unconditional_expected_purchases(params, 300.0)) < 4 * se
    assert (sim["recency"] <= sim["T"]).all() and (sim.loc[sim["frequency"] == 0, "recency"] == 0).all()


# ---------------------------------------------------------------- fitting


@pytest.fixture(scope="module")
def simulated():
    """5,000 customers from the CDNOW models (days), first purchases spread over 6-18 months."""
    T = np.random.default_rng(11).uniform(180, 540, 5_000)
    return clv.simulate_summary(CDNOW_DAYS, T, CDNOW_GG, seed=12)


@pytest.fixture(scope="module")
def fitted(simulated):
    return clv.fit_bgnbd(simulated), clv.fit_gamma_gamma(simulated)


def _z_scores(params, truth):
    se_log = np.sqrt(np.diag(np.asarray(params.cov_log)))
    return (np.log(params.values) - np.log(truth)) / se_log, se_log


def test_bgnbd_recovers_simulated_parameters(fitted):
    # Tolerance: 4 asymptotic standard errors (log scale) from the fit's own Hessian. Over 100
    # repeated simulations of this size the z-scores had sd ~1 (see the slow test below), so a
    # correct fit fails this with probability ~1e-4 per parameter; the SE bound keeps it from
    # being vacuous (a broken fit with huge SEs would pass otherwise).
    bg, _ = fitted
    z, se_log = _z_scores(bg, np.array(CDNOW_DAYS))
    assert np.all(np.abs(z) < 4), (bg, z)
    assert np.all(se_log < 0.25)
    assert bg.n == 5_000 and bg.at_bound == () and np.isfinite(bg.log_likelihood)


def test_gamma_gamma_recovers_simulated_parameters(fitted, simulated):
    _, gg = fitted
    z, se_log = _z_scores(gg, np.array(CDNOW_GG))
    assert np.all(np.abs(z) < 4), (gg, z)
    assert np.all(se_log < 0.25)
    assert gg.n == int(((simulated["frequency"] > 0) & (simulated["monetary_value"] > 0)).sum())


def test_fit_in_weeks_gives_the_same_predictions_as_in_days(simulated, fitted):
    bg_days, _ = fitted
    weeks = simulated.assign(recency=simulated["recency"] / 7, T=simulated["T"] / 7)
    weeks.attrs = {"time_unit": "W"}
    bg_weeks = clv.fit_bgnbd(weeks)
    assert bg_weeks.time_unit == "W"
    assert bg_weeks.alpha == pytest.approx(bg_days.alpha / 7, rel=1e-4)
    assert bg_weeks.r == pytest.approx(bg_days.r, rel=1e-4)
    head = simulated.head(50)
    np.testing.assert_allclose(
        clv.expected_purchases(bg_weeks, 90 / 7, weeks.head(50)),
        clv.expected_purchases(bg_days, 90, head),
        rtol=1e-3,
    )
    with pytest.raises(ValueError, match="unit"):
        clv.expected_purchases(bg_weeks, 90, head)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([], "no customers"),
        ([(0, 0.0, 100.0, 0.0)] * 50, "none of the 50 customer"),
        ([(3, 50.0, 100.0, 20.0)], "only 1 of 1 customer"),
        ([(3, 50.0, 100.0, 20.0)] * 10 + [(0, 0.0, 80.0, 0.0)] * 100, "at least 20 repeat buyers"),
    ],
)
def test_fits_refuse_data_that_cannot_support_them(rows, message):
    summary = _summary(rows)
    with pytest.raises(CLVFitError, match=message):
        clv.fit_bgnbd(summary)
    with pytest.raises(CLVFitError, match=message):
        clv.fit_gamma_gamma(summary)


def test_store_without_dropout_still_fits_and_keeps_customers_alive():
    # Nobody ever drops out (p = 0): the likelihood rises towards a -> 0, a limiting case of the model
    # (the UCI store behaves like this for some cut-offs). The fit must not fail on it.
    T = np.random.default_rng(5).uniform(100, 400, 3_000)
    sim = clv.simulate_summary((0.8, 60.0, 1e-9, 1e9), T, seed=6)
    bg = clv.fit_bgnbd(sim)
    assert bg.a < 0.05  # E[dropout per purchase] ~ 0
    repeaters = sim[sim["frequency"] > 0]
    assert np.median(clv.p_alive(bg, repeaters)) > 0.95
    assert np.isfinite(clv.expected_purchases(bg, 90, sim)).all()


# ---------------------------------------------------------------- value


def test_expected_spend_shrinks_own_mean_towards_population_mean():
    gg = GammaGammaParams(*CDNOW_GG, log_likelihood=0.0, n=0)
    population = 6.25 * 15.44 / (3.74 - 1)
    spend = clv.expected_spend(gg, _summary([(0, 0.0, 10.0, 0.0), (2, 5.0, 10.0, 100.0), (50, 9.0, 10.0, 100.0)]))
    assert spend[0] == pytest.approx(population)
    assert population < spend[1] < spend[2] < 100.0


def test_clv_is_purchases_times_spend_and_discounting_lowers_it():
    bg = BGNBDParams(*CDNOW_DAYS, 0.0, 0)
    gg = GammaGammaParams(*CDNOW_GG, log_likelihood=0.0, n=0)
    summary = _summary([(0, 0.0, 200.0, 0.0), (6, 180.0, 200.0, 40.0)])
    plain = clv.clv(bg, gg, summary, months=12)
    expected = clv.expected_purchases(bg, 365.25, summary) * clv.expected_spend(gg, summary)
    np.testing.assert_allclose(plain, expected, rtol=1e-10)
    discounted = clv.clv(bg, gg, summary, months=12, discount_rate_annual=0.10)
    assert np.all(discounted < plain) and np.all(discounted > plain / 1.10)


def test_score_customers_gives_the_export_columns(fitted, simulated):
    bg, gg = fitted
    scores = clv.score_customers(bg, gg, simulated.head(200))
    assert list(scores.columns) == [
        "p_alive",
        "expected_purchases_30d",
        "expected_purchases_90d",
        "expected_purchases_365d",
        "expected_spend",
        "clv_12m",
    ]
    assert scores.notna().all().all()
    assert (scores["expected_purchases_30d"] <= scores["expected_purchases_90d"]).all()
    assert (scores["expected_purchases_90d"] <= scores["expected_purchases_365d"]).all()


# ---------------------------------------------------------------- outlook and backtest


def test_forecast_monthly_adds_up_to_the_per_customer_expectation(fitted, simulated):
    bg, gg = fitted
    summary = simulated.copy()
    summary.attrs = {"time_unit": "D", "as_of": pd.Timestamp("2021-03-15")}
    outlook = clv.forecast_monthly(bg, gg, summary, months=3, n_sims=50)
    assert list(outlook["month"]) == list(pd.to_datetime(["2021-03-01", "2021-04-01", "2021-05-01"]))
    assert list(outlook["days"]) == [16, 30, 31]  # March 16-31 is a partial month
    horizon = (outlook["end"].iloc[-1] - pd.Timestamp("2021-03-15")).days
    total = clv.expected_purchases(bg, horizon, summary).sum()
    assert outlook["expected_purchases"].sum() == pytest.approx(total, rel=1e-9)
    revenue = (clv.expected_purchases(bg, horizon, summary) * clv.expected_spend(gg, summary)).sum()
    assert outlook["expected_revenue"].sum() == pytest.approx(revenue, rel=1e-9)
    assert (outlook["lower"] < outlook["expected_purchases"]).all()
    assert (outlook["expected_purchases"] < outlook["upper"]).all()
    assert (outlook["revenue_lower"] < outlook["expected_revenue"]).all()


def _stationary_lines(n_customers=400, days=420, seed=0):
    """Customers who each buy on a random ~4 % of days, no dropout: easy to forecast."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2020-01-01")
    buys = rng.random((n_customers, days)) < rng.uniform(0.01, 0.07, (n_customers, 1))
    cust, day = np.nonzero(buys)
    return pd.DataFrame(
        {
            "customer_id": [f"c{c}" for c in cust],
            "transaction_id": [f"t{i}" for i in range(len(cust))],
            "purchase_date": start + pd.to_timedelta(day, unit="D"),
            "total_amount": rng.gamma(4.0, 10.0, len(cust)),
        }
    )


def test_backtest_compares_forecast_with_what_happened():
    lines = _stationary_lines()
    result = clv.backtest(lines, "2020-10-31", months=6, n_sims=30)
    # The data end on 2021-02-23: February is cut at its 23rd day and later months are left out.
    assert list(result["month"]) == list(pd.to_datetime(["2020-11-01", "2020-12-01", "2021-01-01", "2021-02-01"]))
    assert list(result["days"]) == [30, 31, 31, 23]
    after = lines[lines["purchase_date"] > "2020-10-31"]
    assert result["actual_purchases"].sum() == len(after.drop_duplicates(["customer_id", "purchase_date"]))
    assert result["actual_revenue"].sum() == pytest.approx(after["total_amount"].sum())
    assert result.attrs["mape_purchases"] < 0.15  # a stationary store is forecast closely
    assert result.attrs["mape_purchases"] == pytest.approx(result["abs_pct_error"].mean())


def test_mape_ignores_periods_without_actuals():
    assert clv.mape([10, 0, 20], [12, 5, 15]) == pytest.approx((0.2 + 0.25) / 2)


# ---------------------------------------------------------------- slow


@pytest.mark.slow
def test_standard_errors_are_calibrated_by_repeated_simulation():
    # Justifies the 4-SE tolerance above: the z-scores of 30 independent fits look standard normal.
    truth_bg, truth_gg = np.array(CDNOW_DAYS), np.array(CDNOW_GG)
    zs = []
    for rep in range(30):
        T = np.random.default_rng(100 + rep).uniform(180, 540, 3_000)
        sim = clv.simulate_summary(CDNOW_DAYS, T, CDNOW_GG, seed=200 + rep)
        zs.append(
            np.concatenate(
                [_z_scores(clv.fit_bgnbd(sim), truth_bg)[0], _z_scores(clv.fit_gamma_gamma(sim), truth_gg)[0]]
            )
        )
    zs = np.array(zs)
    assert np.all(np.abs(zs.mean(axis=0)) < 0.6)
    assert np.all((zs.std(axis=0) > 0.6) & (zs.std(axis=0) < 1.5))
    assert (np.abs(zs) < 1.96).mean() > 0.88


@pytest.fixture(scope="module")
def uci_lines():
    if not DATA.exists():
        pytest.skip("UCI Online Retail data not present beside the repository")
    raw = pd.read_csv(DATA, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str})
    lines = pd.DataFrame(
        {
            "customer_id": raw["CustomerID"].str.replace(r"\.0$", "", regex=True),
            "transaction_id": raw["InvoiceNo"],
            "purchase_date": pd.to_datetime(raw["InvoiceDate"]),
            "total_amount": raw["Quantity"] * raw["UnitPrice"],
        }
    )
    return lines[~lines["transaction_id"].str.startswith("C")]  # drop returns


@pytest.mark.slow
def test_real_uci_data_fits_and_backtests(uci_lines):
    summary = clv.rfm_summary(uci_lines)
    assert len(summary) == 4338 and summary.index[0] == "12346"
    bg, gg = clv.fit_bgnbd(summary), clv.fit_gamma_gamma(summary)
    assert np.all(np.isfinite(bg.values)) and np.all(np.isfinite(gg.values))
    assert np.isfinite(bg.log_likelihood) and np.isfinite(gg.log_likelihood)
    scores = clv.score_customers(bg, gg, summary)
    assert scores.notna().all().all() and (scores["clv_12m"] > 0).all()
    result = clv.backtest(uci_lines, "2011-08-31", months=3, n_sims=50)
    assert len(result) == 3 and np.isfinite(result.attrs["mape_purchases"])
    assert result["actual_purchases"].gt(0).all()
