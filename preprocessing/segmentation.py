"""Loyalty tiers: an eligibility bar, then StandardScaler + K-Means on the customers above it.

Pipeline (fit and score use the same steps):

1. Eligibility bar on lifetime ``frequency`` (distinct transactions) and net ``monetary``: a
   customer is eligible when ``frequency >= min_frequency`` **or** ``monetary >= min_monetary``
   (defaults 15 purchases or 30,000 in the store's currency). Below it: no tier, and
   :func:`reward_gap` says what is missing.
2. The clustering features (``SEGMENT_FEATURES``: monetary, frequency, recency,
   avg_purchase_gap_days, num_unique_products — value, habit, freshness, rhythm and breadth) are
   all heavily right-skewed, so each goes through a *signed* ``log1p``
   (``sign(x) * log1p(|x|)``; signed because net monetary can be negative after returns) and then a
   ``StandardScaler`` so no feature dominates the distances by its units.
3. ``KMeans`` (k = 4 by default, ``n_init=4`` k-means++ restarts, fixed ``random_state``), run
   single-threaded: the eligible set is small (thousands to tens of thousands of rows), where
   OpenMP threads cost more than they save — several times more on a busy 2-core machine.
   The silhouette score is computed on a sample of ``SILHOUETTE_SAMPLE`` customers.
4. Clusters are named by value (:func:`map_clusters_to_tiers`): mean net monetary of their
   members, highest first -> Platinum, Gold, Silver, ..., lowest -> Bronze. Because names follow
   value rank and not the arbitrary K-Means label numbers, a retrain cannot shuffle tiers at
   random: "Platinum" is always the cluster worth the most.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from preprocessing.features import FEATURE_COLUMNS
from preprocessing.threads import single_threaded

SEGMENT_FEATURES: tuple[str, ...] = (
    "monetary",
    "frequency",
    "recency",
    "avg_purchase_gap_days",
    "num_unique_products",
)
TIER_NAMES: tuple[str, ...] = ("Platinum", "Gold", "Silver", "Bronze")
DEFAULT_MIN_FREQUENCY = 15
DEFAULT_MIN_MONETARY = 30_000.0
DEFAULT_TIER_SHARE = 0.25
"""``derive_bar``'s default: the top quarter of recent customers by spend, and by purchases, clear the bar."""
DEFAULT_BAR_WINDOW_DAYS = 365
SILHOUETTE_SAMPLE = 3_000
N_INIT = 4

# Every numeric feature of the feature table, in its order (the two timestamps are not profiled).
_PROFILE_FEATURES = tuple(c for c in FEATURE_COLUMNS if c not in ("first_purchase", "last_purchase"))


@dataclass
class SegmentationResult:
    """Everything a fit produces: the two estimators to pickle plus what the pages and manifest show.

    ``scaler`` is fitted on the signed-log1p of ``features`` (its ``feature_names_in_`` lists them);
    ``centres`` are the cluster centres back in original units (index = K-Means label, plus a
    ``tier`` column); ``profile`` has one row per tier, best first; ``n_customers`` is how many
    eligible customers the model was fitted on, ``n_total`` how many customers were offered.
    """

    scaler: StandardScaler
    kmeans: KMeans
    cluster_tiers: dict[int, str]
    profile: pd.DataFrame
    silhouette: float
    centres: pd.DataFrame
    n_customers: int
    n_total: int
    tiers: pd.Series
    features: tuple[str, ...] = field(default=SEGMENT_FEATURES)
    min_frequency: float = DEFAULT_MIN_FREQUENCY
    min_monetary: float = DEFAULT_MIN_MONETARY


def tier_names(k: int) -> list[str]:
    """Tier names for k clusters, best first; the lowest is always Bronze (the entry reward).

    k <= 4: the top k-1 of Platinum/Gold/Silver, then Bronze (k=3 -> Platinum, Gold, Bronze).
    k > 4: Platinum, Gold, Silver, "Tier 4" ... "Tier k-1", Bronze.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    top = list(TIER_NAMES[:-1])
    if k <= len(TIER_NAMES):
        return top[: k - 1] + [TIER_NAMES[-1]]
    return top + [f"Tier {i}" for i in range(len(top) + 1, k)] + [TIER_NAMES[-1]]


def eligible(
    features: pd.DataFrame,
    min_frequency: float = DEFAULT_MIN_FREQUENCY,
    min_monetary: float = DEFAULT_MIN_MONETARY,
) -> pd.Series:
    """Boolean Series: who clears the loyalty bar (frequency >= min_frequency OR monetary >= min_monetary)."""
    return (features["frequency"] >= min_frequency) | (features["monetary"] >= min_monetary)


def derive_bar(
    features: pd.DataFrame, share: float = DEFAULT_TIER_SHARE, window_days: int = DEFAULT_BAR_WINDOW_DAYS
) -> tuple[float, float]:
    """An eligibility bar from the store's own customers, instead of a fixed 15 purchases / 30,000.

    Rule: take the customers who bought in the last ``window_days`` (``recency <= window_days``); the
    bar is the ``1 - share`` quantile of their lifetime ``frequency`` (rounded up to a whole purchase)
    and of their lifetime net ``monetary`` (rounded down to two significant figures, so it reads well
    on a page). Because either one unlocks a tier, between ``share`` and ``2 x share`` of those recent
    customers hold a tier (27 % on the demo store and 32 % on UCI Online Retail with the default 0.25).

    Returns:
        (min_frequency, min_monetary) for :func:`eligible` / :func:`fit_segmentation`; the fixed
        defaults when nobody bought in the window.
    """
    if not 0 < share < 1:
        raise ValueError("share must be between 0 and 1")
    recent = features[features["recency"] <= window_days]
    if recent.empty:
        return float(DEFAULT_MIN_FREQUENCY), DEFAULT_MIN_MONETARY
    min_frequency = float(max(1.0, np.ceil(recent["frequency"].quantile(1 - share))))
    money = float(recent["monetary"].quantile(1 - share))
    if money > 0:
        step = 10 ** (np.floor(np.log10(money)) - 1)
        money = float(np.floor(money / step) * step)
    return min_frequency, money


def _signed_log1p(values: pd.DataFrame) -> pd.DataFrame:
    arr = values.to_numpy(dtype=np.float64)
    return pd.DataFrame(np.sign(arr) * np.log1p(np.abs(arr)), index=values.index, columns=values.columns)


def _signed_expm1(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.expm1(np.abs(values))


def map_clusters_to_tiers(labels: np.ndarray, value: np.ndarray | pd.Series, k: int | None = None) -> dict[int, str]:
    """Name clusters by the mean value of their members so a retrain keeps tier meaning stable.

    Args:
        labels: cluster label per customer (0..k-1).
        value: the value to rank by, per customer (net monetary in practice).
        k: number of clusters (default: max label + 1); an empty cluster ranks last.

    Returns:
        {cluster label: tier name}, the highest mean value named Platinum, the lowest Bronze
        (see :func:`tier_names`). Ties are broken by the lower label.
    """
    labels = np.asarray(labels, dtype=np.int64)
    value = np.asarray(value, dtype=np.float64)
    k = int(labels.max()) + 1 if k is None else int(k)
    sums = np.bincount(labels, weights=value, minlength=k)
    counts = np.bincount(labels, minlength=k)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
    order = sorted(range(k), key=lambda c: (-means[c], c))  # k items, not rows
    return {int(c): name for c, name in zip(order, tier_names(k))}


def _transform(features: pd.DataFrame, scaler: StandardScaler) -> np.ndarray:
    columns = list(getattr(scaler, "feature_names_in_", SEGMENT_FEATURES))
    return scaler.transform(_signed_log1p(features[columns]))


def _profile(features: pd.DataFrame, tiers: pd.Series, names: list[str]) -> pd.DataFrame:
    columns = [c for c in _PROFILE_FEATURES if c in features.columns]
    tiered = features.loc[tiers.notna(), columns]
    by_tier = tiered.groupby(tiers[tiers.notna()], observed=True, sort=False)
    means = by_tier.mean().add_prefix("mean_")
    medians = by_tier.median().add_prefix("median_")
    profile = pd.concat([by_tier.size().rename("members"), means, medians], axis=1)
    profile = profile.reindex(names)
    profile["members"] = profile["members"].fillna(0).astype(np.int64)
    revenue = by_tier["monetary"].sum().reindex(names).fillna(0.0)
    total = float(features["monetary"].sum())
    profile["revenue"] = revenue
    profile["share_of_revenue"] = revenue / total if total > 0 else np.nan
    profile["share_of_customers"] = profile["members"] / max(len(features), 1)
    profile.index.name = "tier"
    return profile


def fit_segmentation(
    features: pd.DataFrame,
    k: int = 4,
    min_frequency: float = DEFAULT_MIN_FREQUENCY,
    min_monetary: float = DEFAULT_MIN_MONETARY,
    random_state: int = 0,
    segment_features: tuple[str, ...] = SEGMENT_FEATURES,
) -> SegmentationResult:
    """Fit scaler + K-Means on the eligible customers and name the clusters by value.

    Args:
        features: output of ``compute_features`` (index customer_id).
        k: number of clusters/tiers.
        min_frequency, min_monetary: the eligibility bar (see :func:`eligible`).
        random_state: seed for K-Means and the silhouette sample (fits are reproducible).
        segment_features: clustering columns (default ``SEGMENT_FEATURES``).

    Returns:
        A :class:`SegmentationResult`; ``profile.share_of_revenue`` is the tier's share of the net
        monetary of *all* customers given (so the tiers sum to less than 1 when some are below the bar).

    Raises:
        ValueError: fewer eligible customers than k.
    """
    mask = eligible(features, min_frequency, min_monetary)
    chosen = features.loc[mask, list(segment_features)]
    if len(chosen) < k:
        raise ValueError(
            f"only {len(chosen)} customer(s) reach the bar ({min_frequency} purchases or "
            f"{min_monetary:,.0f} spent); need at least k={k} to fit {k} tiers"
        )
    scaler = StandardScaler().fit(_signed_log1p(chosen))
    z = scaler.transform(_signed_log1p(chosen))
    with single_threaded("openmp"):
        kmeans = KMeans(n_clusters=k, n_init=N_INIT, random_state=random_state).fit(z)
    labels = kmeans.labels_
    cluster_tiers = map_clusters_to_tiers(labels, chosen["monetary"], k)
    names = tier_names(k)

    tiers = pd.Series(np.nan, index=features.index, dtype="str", name="tier")
    tiers[mask] = np.array([cluster_tiers[c] for c in range(k)], dtype=object)[labels]

    n_labels = len(np.unique(labels))
    if 2 <= n_labels < len(z):
        sample = min(len(z), SILHOUETTE_SAMPLE)
        with single_threaded():
            sil = float(silhouette_score(z, labels, sample_size=sample, random_state=random_state))
    else:
        sil = float("nan")

    centres = pd.DataFrame(
        _signed_expm1(scaler.inverse_transform(kmeans.cluster_centers_)),
        columns=list(segment_features),
    )
    centres.index.name = "cluster"
    centres["tier"] = [cluster_tiers[c] for c in range(k)]

    return SegmentationResult(
        scaler=scaler,
        kmeans=kmeans,
        cluster_tiers=cluster_tiers,
        profile=_profile(features, tiers, names),
        silhouette=sil,
        centres=centres,
        n_customers=int(mask.sum()),
        n_total=len(features),
        tiers=tiers,
        features=tuple(segment_features),
        min_frequency=min_frequency,
        min_monetary=min_monetary,
    )


def assign_tiers(
    features: pd.DataFrame,
    scaler: StandardScaler,
    kmeans: KMeans,
    cluster_tiers: dict[int, str],
    min_frequency: float = DEFAULT_MIN_FREQUENCY,
    min_monetary: float = DEFAULT_MIN_MONETARY,
) -> pd.Series:
    """Score customers with a fitted (possibly unpickled) model: tier name, or missing below the bar.

    Returns:
        Series (str dtype) indexed like ``features``, named ``tier``; customers below the bar are
        missing (``isna()``) — the pages show them as "No tier".
    """
    mask = eligible(features, min_frequency, min_monetary).to_numpy()
    tiers = pd.Series(np.nan, index=features.index, dtype="str", name="tier")
    if mask.any():
        with single_threaded("openmp"):
            labels = kmeans.predict(_transform(features.loc[mask], scaler))
        lookup = np.array([cluster_tiers[c] for c in range(kmeans.n_clusters)], dtype=object)
        tiers[mask] = lookup[labels]
    return tiers


def reward_gap(
    features: pd.DataFrame,
    min_frequency: float = DEFAULT_MIN_FREQUENCY,
    min_monetary: float = DEFAULT_MIN_MONETARY,
) -> pd.DataFrame:
    """What each customer below the bar still needs: either more purchases or more spend.

    Returns:
        One row per not-eligible customer (index customer_id): ``purchases_needed`` (int, distinct
        transactions still missing) and ``spend_needed`` (float, store currency, net of returns).
        Either one alone unlocks the first tier.
    """
    below = features.loc[~eligible(features, min_frequency, min_monetary)]
    purchases = np.ceil(min_frequency - below["frequency"].to_numpy(dtype=np.float64))
    return pd.DataFrame(
        {
            "purchases_needed": np.maximum(purchases, 0).astype(np.int64),
            "spend_needed": np.maximum(min_monetary - below["monetary"].to_numpy(dtype=np.float64), 0.0),
        },
        index=below.index,
    )


def next_tier_gap(features: pd.DataFrame, tiers: pd.Series) -> pd.Series:
    """Spend still needed to match the lowest-spending current member of the next tier up.

    Tiers are ordered by their members' mean monetary (the same rule that named them). The gap is
    ``min monetary of the next tier - own monetary``, floored at 0 (0 means the customer already
    out-spends someone in the next tier: frequency/recency, not spend, keeps them where they are).

    Returns:
        float Series indexed like ``features``, named ``next_tier_gap``; NaN for the top tier and
        for customers without a tier.
    """
    tiers = tiers.reindex(features.index)
    monetary = features["monetary"]
    has = tiers.notna()
    gap = pd.Series(np.nan, index=features.index, name="next_tier_gap")
    if not has.any():
        return gap
    stats = monetary[has].groupby(tiers[has], observed=True, sort=False).agg(["mean", "min"])
    stats = stats.sort_values("mean", ascending=False, kind="stable")
    # next tier up for each tier = the previous row in value order; the top tier has none.
    floor_of_next = pd.Series(stats["min"].shift(1).to_numpy(), index=stats.index)
    target = tiers[has].map(floor_of_next).astype(np.float64)
    gap[has] = np.maximum(target - monetary[has], 0.0)  # NaN target (top tier) stays NaN
    return gap
