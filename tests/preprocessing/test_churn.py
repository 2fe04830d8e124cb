"""Churn risk: leak-free features, labels, bands, the rule fallback, reasons and a real-signal fit."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from preprocessing.churn import (
    FEATURES,
    REASON_GROUPS,
    RULE_HIGH,
    RULE_LOW,
    ChurnTraining,
    FeatureSelector,
    RuleModel,
    band,
    churn_features,
    explain,
    label_frame,
    rule_label,
    score_churn,
    train_churn,
    train_churn_frames,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "online_retail_uci.csv.gz"
DAY = pd.Timedelta(days=1)
CUTOFF = pd.Timestamp("2023-06-30 18:00")


def make_lines(rows) -> pd.DataFrame:
    """Canonical purchase lines from (customer, transaction, date, product, quantity, price) tuples."""
    frame = pd.DataFrame(
        rows, columns=["customer_id", "transaction_id", "purchase_date", "product_id", "quantity", "price_per_unit"]
    )
    frame["purchase_date"] = pd.to_datetime(frame["purchase_date"])
    frame["quantity"] = frame["quantity"].astype(float)
    frame["price_per_unit"] = frame["price_per_unit"].astype(float)
    frame["product_name"] = "item " + frame["product_id"]
    frame["total_amount"] = frame["quantity"] * frame["price_per_unit"]
    return frame


def synthetic_lines(n_customers: int, days: int = 540, seed: int = 0) -> pd.DataFrame:
    """A store whose customers buy at different rates (Poisson) until they silently stop for good.

    Each customer joins in the first half of the period, buys at their own rate and stops after an
    exponential lifetime — so "no purchase in the next 90 days" is predictable, but not perfectly.
    """
    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 1 / 40, n_customers)  # purchases per day, ~1 every 20 days on average
    join = rng.uniform(0, days / 2, n_customers)
    stop = np.minimum(join + rng.exponential(250, n_customers), days)
    counts = rng.poisson(rate * (stop - join)) + 1
    cust = np.repeat(np.arange(n_customers), counts)
    when = join[cust] + rng.uniform(0, 1, len(cust)) * (stop - join)[cust]
    qty = rng.integers(1, 5, len(cust)).astype(float)
    price = np.round(rng.lognormal(2, 0.5, len(cust)), 2)
    return pd.DataFrame(
        {
            "customer_id": np.char.mod("C%05d", cust).astype(object),
            "transaction_id": np.char.mod("T%07d", np.arange(len(cust))).astype(object),
            "purchase_date": pd.Timestamp("2022-01-01") + pd.to_timedelta(np.round(when * 24), unit="h"),
            "product_id": np.char.mod("P%02d", rng.integers(0, 30, len(cust))).astype(object),
            "product_name": "item",
            "quantity": qty,
            "price_per_unit": price,
            "total_amount": qty * price,
        }
    )


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Small fits: OpenMP threads only add stalls when the machine is busy (other test runs).
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def trained(one_thread) -> tuple[pd.DataFrame, ChurnTraining]:
    lines = synthetic_lines(500, seed=1)
    return lines, train_churn(lines)


@pytest.fixture(scope="module", params=["logistic", "gradient_boosting"])
def each_model(request, trained) -> tuple[pd.DataFrame, ChurnTraining]:
    """A model of each kind, trained on the same windows, so reasons are checked for both."""
    lines, _ = trained
    ref = lines["purchase_date"].max()
    train, holdout = (label_frame(lines, ref - k * 90 * DAY) for k in (2, 1))
    result = train_churn_frames(train, holdout, holdout, candidates=(request.param,), check_calibration=False)
    result.cutoffs = {"reference": ref}
    return lines, result


# ------------------------------------------------------------------------------ no leakage
def test_purchases_after_the_cutoff_do_not_change_any_feature():
    before = [
        ("A", "t1", CUTOFF - 200 * DAY, "p1", 2, 10.0),
        ("A", "t2", CUTOFF - 100 * DAY, "p2", 1, 30.0),
        ("A", "t3", CUTOFF - 20 * DAY, "p1", 3, 10.0),
        ("A", "t4", CUTOFF, "p3", 1, 5.0),  # exactly at the cutoff: part of the history
        ("B", "t5", CUTOFF - 50 * DAY, "p1", 1, 10.0),
    ]
    after = [  # would change monetary, frequency, products, recency, the trend windows ...
        ("A", "t6", CUTOFF + pd.Timedelta(minutes=1), "p9", 50, 100.0),
        ("A", "t7", CUTOFF + 30 * DAY, "p8", 5, 20.0),
        ("B", "t8", CUTOFF + 10 * DAY, "p1", -1, 10.0),
        ("C", "t9", CUTOFF + 5 * DAY, "p1", 1, 10.0),  # new customer after the cutoff
        (None, "t10", CUTOFF + 95 * DAY, "p1", 1, 10.0),  # anonymous sale: the data reach the horizon
    ]
    history_only = churn_features(make_lines(before), CUTOFF)
    with_future = churn_features(make_lines(before + after), CUTOFF)
    pd.testing.assert_frame_equal(with_future, history_only)
    assert list(with_future.index) == ["A", "B"]
    assert with_future.loc["A", "monetary"] == 20 + 30 + 30 + 5
    assert with_future.loc["A", "purchases_last_90d"] == 2  # t3 and t4; t2 is 100 days back
    assert with_future.loc["A", "recency"] == 0

    labelled = label_frame(make_lines(before + after), CUTOFF, horizon_days=90)
    pd.testing.assert_frame_equal(labelled[history_only.columns], history_only)


def test_trend_features_compare_the_last_90_days_with_the_90_before():
    lines = make_lines(
        [
            ("A", "t1", CUTOFF - 150 * DAY, "p1", 5, 10.0),  # previous quarter: 50 + 50
            ("A", "t2", CUTOFF - 120 * DAY, "p1", 5, 10.0),
            ("A", "t3", CUTOFF - 64 * DAY, "p1", 6, 10.0),  # last quarter: 60
            ("A", "r1", CUTOFF - 60 * DAY, "p1", -1, 10.0),  # a return: spend, not a purchase
            ("A", "t0", CUTOFF - 400 * DAY, "p1", 1, 99.0),  # too old for either window
        ]
    )
    row = churn_features(lines, CUTOFF).loc["A"]
    assert row["spend_prev_90d"] == 100.0
    assert row["spend_last_90d"] == 50.0
    assert row["purchases_prev_90d"] == 2
    assert row["purchases_last_90d"] == 1
    assert row["spend_trend"] == pytest.approx((50 - 100) / 150)
    assert row["recency_gap_ratio"] == pytest.approx(60 / ((400 - 60) / 4))
    assert row["single_visit"] == 0
    assert not churn_features(lines, CUTOFF)[FEATURES].isna().any().any()


# --------------------------------------------------------------------------------- labels
def test_labels_follow_purchases_in_the_horizon_after_the_cutoff():
    lines = make_lines(
        [
            ("back", "t1", CUTOFF - 30 * DAY, "p1", 1, 10.0),
            ("back", "t2", CUTOFF + 10 * DAY, "p1", 1, 10.0),
            ("gone", "t3", CUTOFF - 30 * DAY, "p1", 1, 10.0),
            ("late", "t4", CUTOFF - 5 * DAY, "p1", 1, 10.0),
            ("late", "t5", CUTOFF + 90 * DAY + pd.Timedelta(hours=1), "p1", 1, 10.0),  # after the horizon
            ("edge", "t6", CUTOFF - 5 * DAY, "p1", 1, 10.0),
            ("edge", "t7", CUTOFF + 90 * DAY, "p1", 1, 10.0),  # the last moment of the horizon counts
            ("returner", "t8", CUTOFF - 5 * DAY, "p1", 2, 10.0),
            ("returner", "t9", CUTOFF + 3 * DAY, "p1", -2, 10.0),  # only a return: not a purchase
            ("newcomer", "t10", CUTOFF + 3 * DAY, "p1", 1, 10.0),  # no history: not in the sample
            ("refund_only", "t11", CUTOFF - 3 * DAY, "p1", -1, 10.0),  # never bought: not in the sample
            (None, "t12", CUTOFF + 100 * DAY, "p1", 1, 10.0),  # anonymous sale, extends the data
        ]
    )
    labels = label_frame(lines, CUTOFF, horizon_days=90)["churned"]
    assert labels.to_dict() == {"back": 0, "gone": 1, "late": 1, "edge": 0, "returner": 1}


def test_label_frame_refuses_a_horizon_the_data_do_not_cover():
    lines = make_lines([("A", "t1", CUTOFF - 10 * DAY, "p1", 1, 1.0), ("A", "t2", CUTOFF + 30 * DAY, "p1", 1, 1.0)])
    with pytest.raises(ValueError, match="horizon is not covered"):
        label_frame(lines, CUTOFF, horizon_days=90)


# ---------------------------------------------------------------------------------- bands
def test_band_boundaries_are_exact():
    p = pd.Series([0.0, 0.2999, 0.3, 0.5, 0.7, 0.7001, 1.0, np.nan], index=list("abcdefgh"))
    assert band(p).tolist() == ["Low", "Low", "Medium", "Medium", "Medium", "High", "High", None]
    assert list(band(p).index) == list("abcdefgh")
    assert band([0.5, 0.6], high=0.55, low=0.5).tolist() == ["Medium", "High"]


# ------------------------------------------------------------------------ rule and fallback
def test_rule_flags_overdue_low_value_infrequent_customers():
    features = pd.DataFrame(
        {
            "recency": [60, 60, 5, 60],
            "avg_purchase_gap_days": [20.0, 20.0, 20.0, 20.0],
            "monetary": [10.0, 500.0, 10.0, 12.0],
            "frequency": [1, 1, 2, 9],
        },
        index=pd.Index(["overdue_small", "big_spender", "recent", "regular"], name="customer_id"),
    )
    assert rule_label(features).to_dict() == {"overdue_small": 1, "big_spender": 0, "recent": 0, "regular": 0}


def test_short_data_falls_back_to_the_rule_and_says_why():
    start = pd.Timestamp("2024-01-01")
    rows = [
        (f"C{i}", f"t{i}-{k}", start + pd.Timedelta(days=int(i % 7 + 20 * k)), "p1", 1 + i % 3, 5.0 + i)
        for i in range(40)
        for k in range(1 + i % 4)
    ]
    result = train_churn(make_lines(rows))
    assert result.fallback is True
    assert result.chosen == "rule"
    assert "fallback" in result.reason and "270" in result.reason
    features = churn_features(make_lines(rows), result.cutoffs["reference"])
    p = score_churn(result.model, features)
    assert set(np.unique(p)) <= {RULE_HIGH, RULE_LOW}
    assert (p == RULE_HIGH).sum() == rule_label(features).sum() > 0
    assert set(band(p)) <= {"High", "Low"}
    restored = pickle.loads(pickle.dumps(result.model))
    pd.testing.assert_series_equal(score_churn(restored, features), p)
    assert result.manifest()["fallback"] is True


def test_long_data_with_one_class_only_falls_back():
    # Everyone buys every week for a year: nobody ever churns, so there is nothing to learn from.
    start = pd.Timestamp("2023-01-01")
    rows = [(f"C{i}", f"t{i}-{w}", start + pd.Timedelta(weeks=w), "p1", 1, 5.0) for i in range(60) for w in range(52)]
    result = train_churn(make_lines(rows))
    assert result.fallback is True
    assert "0 churned" in result.reason


# -------------------------------------------------------------------------------- reasons
def test_rule_reasons_name_the_conditions_in_plain_words():
    lines = make_lines(
        [
            ("quiet", "t1", CUTOFF - 150 * DAY, "p1", 5, 10.0),
            ("quiet", "t2", CUTOFF - 120 * DAY, "p1", 5, 10.0),
            ("quiet", "t3", CUTOFF - 64 * DAY, "p1", 6, 10.0),
        ]
        + [(f"R{i}", f"r{i}-{k}", CUTOFF - (10 + 7 * k) * DAY, "p2", 3, 20.0) for i in range(5) for k in range(8)]
    )
    features = churn_features(lines, CUTOFF)
    pipe = Pipeline([("features", FeatureSelector()), ("model", RuleModel())]).fit(features)
    reasons = explain(pipe, features, top=3)
    assert reasons.loc["quiet"].tolist() == [
        "no visit for 64 days, 1.5× their usual gap",
        "only 3 purchases in total",
        "only 160.00 spent in total",
    ]
    assert score_churn(pipe, features)["quiet"] == RULE_HIGH


def test_reasons_are_stable_readable_and_only_risk_raising_for_high_risk(each_model):
    lines, result = each_model
    features = churn_features(lines, result.cutoffs["reference"])
    p = score_churn(result.model, features)
    first = explain(result.model, features, top=3)
    again = explain(result.model, features.iloc[::-1], top=3).loc[features.index]
    pd.testing.assert_frame_equal(first, again)
    assert list(first.columns) == ["reason_1", "reason_2", "reason_3"]
    text = first.stack().dropna()
    assert len(text) > len(features)
    assert not text.str.contains(r"nan|inf|None|\be[+-]\d", regex=True).any()
    assert text.str.fullmatch(r"[a-z0-9][a-z0-9 .,:()×%-]*").all()

    from preprocessing.churn import _contributions

    high = p > 0.7
    assert high.sum() > 0
    contrib = _contributions(result.model, features[high])
    all_reasons = explain(result.model, features[high], top=len(REASON_GROUPS))
    assert (all_reasons.notna().sum(axis=1).to_numpy() == (np.round(contrib, 9) > 0).sum(axis=1)).all()


def test_reasons_describe_visits_and_spend_trend(each_model):
    _, result = each_model
    lines = make_lines(
        [
            ("X", "t1", CUTOFF - 150 * DAY, "p1", 5, 10.0),
            ("X", "t2", CUTOFF - 120 * DAY, "p1", 5, 10.0),
            ("X", "t3", CUTOFF - 64 * DAY, "p1", 6, 10.0),
        ]
    )
    features = churn_features(lines, CUTOFF)
    words = set(explain(result.model, features, top=8, high=1.0).loc["X"].dropna())
    assert "no visit for 64 days, 1.5× their usual gap" in words
    assert "spend down 40 % vs previous quarter" in words
    assert "1 purchase in the last quarter (2 the quarter before)" in words


# ------------------------------------------------------------------------------- training
def test_training_on_real_signal_beats_chance_on_the_temporal_holdout(trained):
    lines, result = trained
    assert result.fallback is False
    assert result.chosen in ("logistic", "gradient_boosting")
    ref = lines["purchase_date"].max()
    assert result.cutoffs == {"train": ref - 180 * DAY, "holdout": ref - 90 * DAY, "reference": ref}
    for name in ("logistic", "gradient_boosting", "calibrated"):
        assert result.metrics[name]["roc_auc"] > 0.6, name
    chosen = result.metrics[result.chosen]
    assert chosen["pr_auc"] == max(result.metrics[c]["pr_auc"] for c in ("logistic", "gradient_boosting"))
    assert 0.5 <= result.metrics["rule"]["roc_auc"] <= 1.0
    table = result.metrics["calibrated"]["calibration"]
    assert len(table) == 10 and sum(b["n"] for b in table) == result.class_balance["holdout"]["n"]
    balance = result.class_balance["holdout"]
    assert 0 < balance["churned"] < balance["n"]

    features = churn_features(lines, ref)
    p = score_churn(result.model, features)
    assert p.between(0, 1).all() and p.index.equals(features.index)
    restored = pickle.loads(pickle.dumps(result.model))
    pd.testing.assert_series_equal(score_churn(restored, features), p)
    manifest = result.manifest()
    assert manifest["features"] == FEATURES and manifest["cutoffs"]["reference"] == ref.isoformat()


def test_importing_churn_does_not_import_flask():
    code = "import sys, preprocessing.churn; sys.exit('flask' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


# ------------------------------------------------------------------------------ real data
def uci_lines() -> pd.DataFrame:
    """The UCI Online Retail file mapped to canonical purchase lines."""
    if not DATA.exists():
        pytest.skip(f"real data not found at {DATA}")
    raw = pd.read_csv(DATA, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str})
    lines = pd.DataFrame(
        {
            "customer_id": raw["CustomerID"].str.replace(r"\.0$", "", regex=True),
            "transaction_id": raw["InvoiceNo"],
            "purchase_date": pd.to_datetime(raw["InvoiceDate"]),
            "product_id": raw["StockCode"],
            "product_name": raw["Description"],
            "quantity": raw["Quantity"].astype(float),
            "price_per_unit": raw["UnitPrice"].astype(float),
        }
    )
    lines["total_amount"] = lines["quantity"] * lines["price_per_unit"]
    return lines


@pytest.mark.slow
def test_uci_online_retail_trains_on_a_temporal_split():
    lines = uci_lines()
    result = train_churn(lines)
    assert result.fallback is False
    for name in ("logistic", "gradient_boosting", "rule", "calibrated"):
        m = result.metrics[name]
        assert 0.5 <= m["roc_auc"] <= 1.0, name
        print(f"UCI {name}: ROC-AUC {m['roc_auc']:.3f} PR-AUC {m['pr_auc']:.3f} Brier {m['brier']:.3f}")
    print("UCI class balance", result.class_balance, "chosen", result.chosen)
    # The point of the time split: the model ranks real future churn better than the old rule did.
    assert result.metrics[result.chosen]["roc_auc"] > result.metrics["rule"]["roc_auc"]
    features = churn_features(lines, result.cutoffs["reference"])
    assert features.index.str.fullmatch(r"\d{5}").all()
    bands = band(score_churn(result.model, features))
    assert set(bands.unique()) <= {"High", "Medium", "Low"} and bands.nunique() >= 2
    reasons = explain(result.model, features)
    assert reasons["reason_1"].notna().mean() > 0.9
