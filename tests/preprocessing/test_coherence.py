"""One coherent customer picture: lifecycle status, contradiction shares, store-derived tiers, dead-stock bundles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from preprocessing import bundling, churn, clv, segmentation
from preprocessing.coherence import coherence, customer_picture, reconciled_p_alive
from preprocessing.features import compute_features
from preprocessing.lifecycle import STATUSES, lifecycle_status
from preprocessing.suggestions import dead_stock_suggestions, pushes_only_dead_stock
from preprocessing.synthetic import generate_store

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "online_retail_uci.csv.gz"


# ------------------------------------------------------------------------------ lifecycle
def _customer(recency, gap=30.0, visits=5, active=400, p_return=np.nan, churn_p=np.nan):
    return {
        "recency": recency,
        "avg_purchase_gap_days": gap,
        "store_visit_frequency": visits,
        "active_days": active,
        "p_return_12m": p_return,
        "churn_probability": churn_p,
    }


@pytest.mark.parametrize(
    "row, expected",
    [
        (_customer(10), "Active"),
        (_customer(60), "Active"),  # 2 x gap, but within the 60-day floor
        (_customer(61), "At risk"),  # past max(1.5 x 30, 60)
        (_customer(20, churn_p=0.71), "At risk"),  # in rhythm, but High churn band
        (_customer(20, churn_p=0.70), "Active"),
        (_customer(180), "At risk"),
        (_customer(181), "Lapsing"),  # past max(2 x 30, 180)
        (_customer(181, gap=100.0), "At risk"),  # a slow buyer: max(2 x 100, 180) = 200
        (_customer(366, p_return=0.1), "Lost"),  # past max(3 x 30, 365) and < 20 % chance to buy in 12 months
        (_customer(366, p_return=0.2), "Lapsing"),  # long gone by the clock, but the model still sees a return
        (_customer(365, p_return=0.01), "Lapsing"),
        (_customer(366), "Lost"),  # no model: the idle rule alone
        (_customer(400, gap=200.0, p_return=0.05), "At risk"),  # 2 x 200 = 400 days not passed
        (_customer(401, gap=200.0, p_return=0.05), "Lapsing"),  # 3 x 200 = 600 days not reached
        (_customer(30, gap=0.0, visits=1, active=30), "New"),
        (_customer(90, gap=0.0, visits=1, active=90, churn_p=0.9), "New"),  # a welcome, not a nudge
        (_customer(91, gap=0.0, visits=1, active=91), "At risk"),  # one visit: only the floors apply
        (_customer(200, gap=0.0, visits=1, active=200), "Lapsing"),
    ],
)
def test_lifecycle_status_boundaries(row, expected):
    status = lifecycle_status(pd.DataFrame([row], index=["C1"]))
    assert status.loc["C1"] == expected and list(status.cat.categories) == list(STATUSES)


def test_lifecycle_works_without_model_columns_and_keeps_the_index():
    frame = pd.DataFrame([_customer(10), _customer(400)], index=["A", "B"]).drop(
        columns=["p_return_12m", "churn_probability"]
    )
    assert lifecycle_status(frame).tolist() == ["Active", "Lost"]


# ------------------------------------------------------------------------------ coherence
def test_coherence_counts_both_contradictions():
    frame = pd.DataFrame({"churn_probability": [0.8, 0.8, 0.2, 0.2, np.nan], "p_alive": [0.95, 0.5, 0.05, 0.5, 0.99]})
    assert coherence(frame) == {"n": 4, "high_churn_alive": 0.25, "low_churn_dead": 0.25, "contradictions": 0.5}


def test_reconciled_p_alive_agrees_with_the_churn_probability():
    c = np.array([0.9, 0.2, 0.5, 0.5, np.nan])
    q = np.array([0.1, 0.1, 0.8, 0.5, 0.5])
    model = np.array([1.0, 1.0, 1.0, 0.3, 1.0])
    alive = reconciled_p_alive(c, q, model)
    np.testing.assert_allclose(alive[:4], [0.1 / 0.9, 0.8 / 0.9, 1.0, 0.3])
    assert np.isnan(alive[4])
    # the identity the rule keeps: churn = 1 - P(alive) (1 - q) wherever nothing was clipped
    assert 1 - alive[0] * (1 - q[0]) == pytest.approx(c[0])


def _store_picture(lines):
    trained = churn.train_churn(lines)
    reference = trained.cutoffs["reference"]
    p = churn.score_churn(trained.model, churn.churn_features(lines, reference))
    summary = clv.rfm_summary(lines, as_of=reference)
    bg = clv.fit_purchase_model(summary)
    return customer_picture(p, bg, clv.fit_gamma_gamma(summary), summary, trained.horizon_days), bg, summary


@pytest.fixture(scope="module")
def demo():
    store = generate_store(5000, seed=42)
    lines = store["transactions"].copy()
    lines["customer_id"] = lines["customer_id"].replace("", np.nan)
    lines["purchase_date"] = pd.to_datetime(lines["purchase_date"])
    return lines, store["stock"]


def test_demo_store_scores_do_not_contradict(demo):
    picture, bg, summary = _store_picture(demo[0])
    assert bg.model == "mbgnbd"
    shares = coherence(picture)
    assert shares["n"] > 4000 and shares["contradictions"] < 0.02
    shown = coherence(picture, "p_return_12m")  # what the customer page shows beside the churn risk
    assert shown["n"] == shares["n"] and shown["contradictions"] < 0.02
    # the same P(alive) behind it: buying within a year needs being a customer, so never more than it
    both = picture.dropna(subset=["p_return_12m"])
    assert (both["p_return_12m"] <= both["p_alive"] + 1e-12).all()
    # one P(alive) behind every number: expected purchases never exceed what a live customer makes
    assert (picture["p_alive"] <= picture["p_alive_model"] + 1e-12).all()
    one_timers = summary["frequency"].reindex(picture.index) == 0
    assert picture.loc[one_timers, "p_alive"].lt(0.9).mean() > 0.5  # BG/NBD would say 1 for all of them


def test_demo_store_tiers_fit_the_store(demo):
    features = compute_features(demo[0])
    bar = segmentation.derive_bar(features)
    recent = features["recency"] <= 365
    share = segmentation.eligible(features, *bar)[recent].mean()
    assert 0.2 <= share <= 0.6


def test_derive_bar_rule_on_a_small_frame():
    features = pd.DataFrame(
        {"frequency": [1, 2, 3, 4, 50], "monetary": [10.0, 20, 30, 40, 12_345], "recency": [5, 5, 5, 5, 400]}
    )
    min_frequency, min_monetary = segmentation.derive_bar(features, share=0.25)
    assert min_frequency == 4 and min_monetary == 32.0  # quantile 0.75 of the four recent: 3.25 -> 4, 32.5 -> 32
    with pytest.raises(ValueError):
        segmentation.derive_bar(features, share=1.5)


def test_demo_dead_stock_has_ten_suggestions_that_push_only_dead_stock(demo):
    lines, stock = demo
    report = bundling.dead_stock(stock)
    found = dead_stock_suggestions(lines, report)
    assert found["product_id"].is_unique and len(found) >= 10
    assert pushes_only_dead_stock(found, report.dead["product_id"])
    assert (found["baskets"] >= 10).all() and (found["lift"] >= 1).all() and (found["confidence"] >= 0.05).all()
    assert found["stock_value"].is_monotonic_decreasing


def test_suggestions_on_inline_baskets():
    baskets = {f"T{i}": ["A", "D"] for i in range(12)} | {f"U{i}": ["A", "B"] for i in range(12)}
    baskets |= {f"V{i}": ["B"] for i in range(20)} | {f"W{i}": ["D", "E"] for i in range(3)}
    lines = pd.DataFrame(
        [(t, p) for t, items in baskets.items() for p in items], columns=["transaction_id", "product_id"]
    ).assign(quantity=1)
    dead = pd.DataFrame({"product_id": ["D", "E", "Z"], "stock_value": [50.0, 500.0, 9.0]})
    found = dead_stock_suggestions(lines, dead)
    # E is in only 3 baskets (< 10): no rule; D is pushed next to A; A -> B is never suggested (B sells)
    assert found["product_id"].tolist() == ["D"] and found.loc[0, "antecedents"] == ("A",)
    assert dead_stock_suggestions(lines, dead, min_baskets=3)["product_id"].tolist() == ["E", "D"]


# ------------------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def uci():
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
def test_uci_scores_and_tiers(uci):
    picture, bg, summary = _store_picture(uci)
    shares = coherence(picture)
    raw = coherence(picture.assign(p_alive=picture["p_alive_model"]))
    assert shares["low_churn_dead"] < 0.02 and shares["contradictions"] < raw["contradictions"]
    # The latent P(alive) still reads "alive" for slow buyers the model expects to be quiet for the
    # horizon anyway: one year of data shows no dropout (a -> 0), so it stays about 6 %. The page shows
    # the chance of buying again within 12 months instead, which meets the target.
    assert bg.a < 0.01 and shares["contradictions"] < 0.08
    shown = coherence(picture, "p_return_12m")
    assert shown["n"] == shares["n"] > 4000 and shown["contradictions"] < 0.02
    features = compute_features(uci)
    recent = features["recency"] <= 365
    assert 0.2 <= segmentation.eligible(features, *segmentation.derive_bar(features))[recent].mean() <= 0.6
