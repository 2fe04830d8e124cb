"""Small-input paths equal the general ones: rfm_summary and trend_windows by numpy, many horizons at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from preprocessing.clv import summary as rfm


def _lines(seed: int, customers: int, n: int, categorical: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = rng.choice([f"C{i:03d}" for i in range(customers)], n)
    amount = np.round(rng.normal(20, 25, n), 2)  # returns (< 0) and zero lines included
    amount[rng.random(n) < 0.05] = 0.0
    dates = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 700 * 24, n), unit="h")
    frame = pd.DataFrame({"customer_id": ids, "purchase_date": dates, "total_amount": amount})
    frame.loc[rng.random(n) < 0.03, "customer_id"] = None  # anonymous lines
    if categorical:
        frame["customer_id"] = frame["customer_id"].astype("category")
    return frame


def _groupby_path(lines, as_of, freq):
    daily = rfm._purchase_days(lines)
    day = pd.Timestamp(as_of).normalize()
    return rfm.rfm_summary_from_day_totals(rfm._day_totals(daily[daily["day"] <= day]), day, freq)


@pytest.mark.parametrize("categorical", [True, False])
@pytest.mark.parametrize("freq", ["D", "W"])
@pytest.mark.parametrize(("seed", "customers", "n"), [(1, 1, 1), (2, 1, 9), (3, 40, 300), (4, 400, 5000)])
def test_the_small_path_equals_the_groupby_path(seed, customers, n, categorical, freq):
    lines = _lines(seed, customers, n, categorical)
    as_of = pd.Timestamp("2026-06-30 15:00")  # some lines are later: ignored by both
    small = rfm._rfm_summary_small(lines, as_of.normalize(), freq)
    if small is None:
        assert _groupby_path(lines, as_of, freq).empty
        return
    expected = _groupby_path(lines, as_of, freq)
    pd.testing.assert_frame_equal(small, expected, check_exact=False, rtol=1e-12, atol=1e-9)
    assert small.attrs == expected.attrs
    pd.testing.assert_frame_equal(rfm.rfm_summary(lines, as_of=as_of, freq=freq), expected, rtol=1e-12, atol=1e-9)


def test_no_counting_line_falls_back_to_the_groupby_path_empty_frame():
    lines = pd.DataFrame(
        {
            "customer_id": ["A", "B"],
            "purchase_date": pd.to_datetime(["2026-01-01", "2026-01-02"]),
            "total_amount": [-5.0, 0],
        }
    )
    assert rfm._rfm_summary_small(lines, pd.Timestamp("2026-02-01"), "D") is None
    out = rfm.rfm_summary(lines, as_of="2026-02-01")
    assert out.empty and list(out.columns) == ["frequency", "recency", "T", "monetary_value"]


@pytest.mark.parametrize("n", [5, 3000])  # 3000: the grouped path (repeated rows collapsed)
@pytest.mark.parametrize("a", [0.8, 1e-4, 1.0000001])  # 1.0000001: every value by quadrature
@pytest.mark.parametrize("modified", [False, True])
def test_expected_purchases_for_many_horizons_equals_one_horizon_at_a_time(n, a, modified):
    from preprocessing.clv import bgnbd
    from preprocessing.clv.params import BGNBDParams, MBGNBDParams

    rng = np.random.default_rng(n)
    x = rng.integers(0, 30, n).astype(float)
    T = rng.integers(1, 700, n).astype(float)
    tx = np.where(x > 0, np.minimum(T, rng.integers(0, 700, n)), 0).astype(float)
    summary = pd.DataFrame({"frequency": x, "recency": tx, "T": T})
    summary.attrs = {"time_unit": "D"}
    params = (MBGNBDParams if modified else BGNBDParams)(r=0.5, alpha=40.0, a=a, b=3.0, log_likelihood=0.0, n=n)
    horizons = [30, 90, 365] + [k * 30.4375 for k in range(1, 13)]
    many = bgnbd.expected_purchases_if_alive(params, horizons, summary)
    one = np.column_stack([bgnbd.expected_purchases_if_alive(params, h, summary) for h in horizons])
    assert many.shape == (n, len(horizons))
    np.testing.assert_allclose(many, one, rtol=1e-13, atol=0)


@pytest.mark.parametrize("categorical", [True, False])
@pytest.mark.parametrize(("seed", "customers", "n"), [(1, 1, 1), (2, 1, 12), (3, 50, 400), (4, 300, 6000)])
def test_trend_windows_small_path_equals_the_groupby_path(seed, customers, n, categorical, monkeypatch):
    from preprocessing.churn import features as churn_features

    rng = np.random.default_rng(seed)
    lines = _lines(seed, customers, n, categorical)
    lines["transaction_id"] = [f"T{i}" for i in rng.integers(0, max(n // 3, 1), n)]  # several lines per basket
    lines["quantity"] = rng.integers(-1, 4, n)  # returns and zero quantities too
    as_of = pd.Timestamp("2026-06-30 15:00")
    small = churn_features.trend_windows(lines, as_of)
    monkeypatch.setattr(churn_features, "SMALL_LINES", 0)
    expected = churn_features.trend_windows(lines, as_of)
    pd.testing.assert_frame_equal(small, expected, check_exact=False, rtol=1e-12, atol=1e-9)
