"""Loyalty tiers: eligibility bar, value-ordered tiers, scoring, progress gaps."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from preprocessing.segmentation import (
    assign_tiers,
    eligible,
    fit_segmentation,
    map_clusters_to_tiers,
    next_tier_gap,
    reward_gap,
    tier_names,
)


def make_features(monetary, frequency, recency=None, gap=None, products=None, ids=None) -> pd.DataFrame:
    n = len(monetary)
    frame = pd.DataFrame(
        {
            "monetary": np.asarray(monetary, dtype=float),
            "frequency": np.asarray(frequency, dtype=np.int64),
            "total_quantity": np.asarray(monetary, dtype=float) / 10,
            "num_unique_products": np.asarray(products if products is not None else [5] * n, dtype=np.int64),
            "avg_price_per_unit": np.full(n, 10.0),
            "store_visit_frequency": np.asarray(frequency, dtype=np.int64),
            "active_days": np.full(n, 300, dtype=np.int64),
            "avg_purchase_gap_days": np.asarray(gap if gap is not None else [10.0] * n, dtype=float),
            "recency": np.asarray(recency if recency is not None else [5] * n, dtype=np.int64),
        },
        index=pd.Index(ids if ids is not None else [f"c{i}" for i in range(n)], name="customer_id"),
    )
    return frame


def test_eligibility_bar_boundaries():
    f = make_features(
        monetary=[29_999.99, 30_000.0, 100.0, 100.0, -50.0],
        frequency=[14, 1, 15, 14, 20],
        ids=["just_below", "spend_exactly", "purchases_exactly", "neither", "returns_but_frequent"],
    )
    got = eligible(f)
    assert got.to_dict() == {
        "just_below": False,
        "spend_exactly": True,
        "purchases_exactly": True,
        "neither": False,
        "returns_but_frequent": True,
    }
    assert list(f.index[eligible(f, min_frequency=20, min_monetary=30_000.01)]) == ["returns_but_frequent"]


def _four_groups(seed: int = 0, per_group: int = 60) -> pd.DataFrame:
    """Four well-separated value groups, all above the bar, shuffled so label order means nothing."""
    rng = np.random.default_rng(seed)
    levels = [  # monetary, frequency, recency, gap, products
        (200_000, 120, 2, 3.0, 400),
        (60_000, 60, 10, 7.0, 150),
        (35_000, 30, 40, 15.0, 60),
        (8_000, 20, 150, 40.0, 15),
    ]
    rows = []
    for m, fr, r, g, p in levels:
        jitter = rng.uniform(0.9, 1.1, size=(per_group, 5))
        rows.append(jitter * np.array([m, fr, r, g, p]))
    data = np.vstack(rows)
    order = rng.permutation(len(data))
    data = data[order]
    return make_features(
        monetary=data[:, 0],
        frequency=np.round(data[:, 1]),
        recency=np.round(data[:, 2]),
        gap=data[:, 3],
        products=np.round(data[:, 4]),
    )


def test_tiers_follow_value_best_first():
    f = _four_groups()
    result = fit_segmentation(f, k=4)
    assert list(result.profile.index) == ["Platinum", "Gold", "Silver", "Bronze"]
    means = result.profile["mean_monetary"].to_numpy()
    assert np.all(np.diff(means) < 0), means
    assert result.profile["members"].tolist() == [60, 60, 60, 60]
    top = f["monetary"].nlargest(60).index
    assert (result.tiers[top] == "Platinum").all()
    assert result.profile["share_of_revenue"].sum() == pytest.approx(1.0)
    assert 0.5 < result.silhouette <= 1.0  # the groups are clearly separated
    assert result.n_customers == len(f)


def test_centres_are_in_original_units():
    result = fit_segmentation(_four_groups(), k=4)
    centres = result.centres.set_index("tier")
    assert centres.loc["Platinum", "monetary"] == pytest.approx(200_000, rel=0.1)
    assert centres.loc["Bronze", "recency"] == pytest.approx(150, rel=0.1)


def test_customers_below_bar_get_no_tier_and_are_not_fitted():
    f = pd.concat([_four_groups(), make_features([500.0, 29_000.0], [3, 14], ids=["small", "near"])])
    result = fit_segmentation(f)
    assert result.tiers[["small", "near"]].isna().all()
    assert result.n_customers == len(f) - 2 and result.n_total == len(f)
    assert result.profile["share_of_revenue"].sum() < 1.0


def test_assign_tiers_reproduces_fit_after_pickling():
    f = pd.concat([_four_groups(), make_features([500.0], [3], ids=["small"])])
    result = fit_segmentation(f)
    scaler = pickle.loads(pickle.dumps(result.scaler))
    kmeans = pickle.loads(pickle.dumps(result.kmeans))
    tiers = assign_tiers(f, scaler, kmeans, result.cluster_tiers)
    pd.testing.assert_series_equal(tiers, result.tiers)
    assert pd.isna(tiers["small"])


def test_retrain_with_other_seed_keeps_tier_meaning():
    f = _four_groups()
    first = fit_segmentation(f, random_state=0).tiers
    second = fit_segmentation(f, random_state=7).tiers
    pd.testing.assert_series_equal(first, second)


def test_map_clusters_to_tiers_ranks_by_mean_value_not_label():
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    value = np.array([10, 12, 900, 1100, 50, 70, 300, 200])
    assert map_clusters_to_tiers(labels, value) == {1: "Platinum", 3: "Gold", 2: "Silver", 0: "Bronze"}


def test_tier_names_for_other_k():
    assert tier_names(4) == ["Platinum", "Gold", "Silver", "Bronze"]
    assert tier_names(3) == ["Platinum", "Gold", "Bronze"]
    assert tier_names(1) == ["Bronze"]
    assert tier_names(6) == ["Platinum", "Gold", "Silver", "Tier 4", "Tier 5", "Bronze"]
    result = fit_segmentation(_four_groups(), k=3)
    assert list(result.profile.index) == ["Platinum", "Gold", "Bronze"]
    assert np.all(np.diff(result.profile["mean_monetary"].to_numpy()) < 0)


def test_too_few_eligible_customers_is_explained():
    f = make_features([40_000.0, 100.0, 200.0], [2, 1, 3])
    with pytest.raises(ValueError, match="only 1 customer"):
        fit_segmentation(f, k=4)


def test_reward_gap_names_what_is_missing():
    f = make_features(
        monetary=[25_800.0, 31_000.0, -100.0, 29_999.5],
        frequency=[12, 2, 1, 16],
        ids=["close", "eligible_by_spend", "returns_only", "eligible_by_purchases"],
    )
    gap = reward_gap(f)
    assert list(gap.index) == ["close", "returns_only"]
    assert gap.loc["close"].to_dict() == {"purchases_needed": 3, "spend_needed": pytest.approx(4_200.0)}
    assert gap.loc["returns_only", "purchases_needed"] == 14
    assert gap.loc["returns_only", "spend_needed"] == pytest.approx(30_100.0)
    assert reward_gap(f, min_frequency=10, min_monetary=1_000).loc["returns_only", "purchases_needed"] == 9


def test_next_tier_gap_is_distance_to_lowest_member_above():
    f = make_features(
        monetary=[100_000, 80_000, 50_000, 45_000, 85_000, 10_000, 12_000, 1_000],
        frequency=[20] * 8,
        ids=["p1", "p2", "g1", "g2", "g3", "b1", "b2", "none"],
    )
    tiers = pd.Series(
        ["Platinum", "Platinum", "Gold", "Gold", "Gold", "Bronze", "Bronze", np.nan], index=f.index, dtype="str"
    )
    gap = next_tier_gap(f, tiers)
    assert np.isnan(gap["p1"]) and np.isnan(gap["p2"])  # top tier: nothing above
    assert gap["g1"] == 30_000 and gap["g2"] == 35_000  # lowest Platinum spends 80,000
    assert gap["g3"] == 0  # already out-spends a Platinum member
    assert gap["b1"] == 35_000 and gap["b2"] == 33_000  # lowest Gold spends 45,000
    assert np.isnan(gap["none"])
