"""Per-customer features: hand-computed answers on tiny frames, a reference cross-check, real data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from preprocessing.features import FEATURE_COLUMNS, compute_features

REPO = Path(__file__).resolve().parents[2]
UCI = REPO.parent / "shared" / "data" / "online_retail_uci.csv.gz"


def make_lines(rows: list[tuple]) -> pd.DataFrame:
    """Canonical lines from (customer, transaction, timestamp, product, quantity, price) tuples."""
    frame = pd.DataFrame(
        rows,
        columns=["customer_id", "transaction_id", "purchase_date", "product_id", "quantity", "price_per_unit"],
    )
    frame["purchase_date"] = pd.to_datetime(frame["purchase_date"])
    frame["quantity"] = frame["quantity"].astype(float)
    frame["price_per_unit"] = frame["price_per_unit"].astype(float)
    frame["total_amount"] = frame["quantity"] * frame["price_per_unit"]
    frame["product_name"] = "name of " + frame["product_id"]
    return frame


AS_OF = pd.Timestamp("2024-03-10 12:00")

LINES = make_lines(
    [
        # A: two transactions on one day, a return, a zero-price line, and a line after as_of.
        ("A", "T1", "2024-03-01 09:00", "p1", 2, 10.0),
        ("A", "T1", "2024-03-01 09:00", "p2", 1, 5.0),
        ("A", "T2", "2024-03-01 17:00", "p1", 1, 10.0),
        ("A", "R1", "2024-03-04 10:00", "p1", -1, 10.0),
        ("A", "T3", "2024-03-07 15:30", "p3", 3, 0.0),
        ("A", "T9", "2024-03-11 10:00", "p9", 100, 100.0),
        # B: a single purchase on the as_of day.
        ("B", "T4", "2024-03-10 08:00", "p2", 1, 5.0),
        # C: only a return.
        ("C", "R2", "2024-03-05 11:00", "p1", -2, 10.0),
        # D: only after as_of -> not a customer yet.
        ("D", "T6", "2024-03-12 09:00", "p1", 1, 10.0),
        # Anonymous sale: never a customer.
        (None, "T5", "2024-03-10 12:00", "p1", 5, 10.0),
    ]
)


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return compute_features(LINES, as_of=AS_OF)


def test_one_row_per_identified_customer_with_lines_up_to_as_of(features):
    assert sorted(features.index) == ["A", "B", "C"]
    assert features.index.name == "customer_id"
    assert list(features.columns) == list(FEATURE_COLUMNS)


def test_customer_with_returns_zero_price_and_later_lines(features):
    a = features.loc["A"]
    assert a["monetary"] == pytest.approx(25.0)  # 20 + 5 + 10 - 10 + 0; the 10,000 after as_of ignored
    assert a["frequency"] == 4  # T1 (two lines), T2, R1, T3 -> distinct transactions, not 5 lines
    assert a["total_quantity"] == pytest.approx(6.0)  # 2 + 1 + 1 - 1 + 3
    assert a["num_unique_products"] == 3  # p1, p2, p3 (p9 is after as_of)
    assert a["avg_price_per_unit"] == pytest.approx(6.25)  # (10 + 5 + 10 + 0) / 4 bought lines
    assert a["store_visit_frequency"] == 3  # 1st, 4th, 7th March
    assert a["active_days"] == 9  # 1st -> 10th March
    assert a["avg_purchase_gap_days"] == pytest.approx(3.0)  # (7 - 1) / (3 - 1)
    assert a["recency"] == 3  # 7th -> 10th March
    assert a["first_purchase"] == pd.Timestamp("2024-03-01 09:00")
    assert a["last_purchase"] == pd.Timestamp("2024-03-07 15:30")


def test_single_purchase_customer(features):
    b = features.loc["B"]
    assert (b["monetary"], b["frequency"], b["total_quantity"]) == (5.0, 1, 1.0)
    assert b["num_unique_products"] == 1
    assert b["avg_price_per_unit"] == 5.0
    assert b["store_visit_frequency"] == 1
    assert b["active_days"] == 0 and b["recency"] == 0  # bought on the as_of day
    assert b["avg_purchase_gap_days"] == 0.0  # documented choice for single-day customers
    assert b["first_purchase"] == b["last_purchase"] == pd.Timestamp("2024-03-10 08:00")


def test_customer_whose_only_lines_are_returns(features):
    c = features.loc["C"]
    assert c["monetary"] == -20.0
    assert c["frequency"] == 1  # the return invoice is a transaction
    assert c["total_quantity"] == -2.0
    assert c["num_unique_products"] == 1
    assert np.isnan(c["avg_price_per_unit"])  # nothing bought
    assert (c["active_days"], c["recency"], c["avg_purchase_gap_days"]) == (5, 5, 0.0)


def test_default_as_of_is_latest_line_in_data():
    default = compute_features(LINES)
    # Latest line is D's on the 12th: D now counts, A's line on the 11th too.
    assert sorted(default.index) == ["A", "B", "C", "D"]
    assert default.loc["A", "monetary"] == pytest.approx(25.0 + 10_000.0)
    assert default.loc["A", "recency"] == 1  # 11th -> 12th
    assert default.loc["B", "recency"] == 2
    assert default.loc["D", "recency"] == 0


def test_moving_as_of_earlier_never_uses_later_lines():
    early = compute_features(LINES, as_of=pd.Timestamp("2024-03-01 12:00"))
    assert list(early.index) == ["A"]
    assert early.loc["A", "frequency"] == 1  # T2 at 17:00 is after the cutoff
    assert early.loc["A", "monetary"] == pytest.approx(25.0)


def test_zero_amount_line_counts_as_purchase_but_adds_no_money():
    lines = make_lines([("Z", "T1", "2024-01-01", "gift", 1, 0.0), ("Z", "T2", "2024-01-03", "gift", 2, 0.0)])
    z = compute_features(lines).loc["Z"]
    assert (z["monetary"], z["frequency"], z["total_quantity"]) == (0.0, 2, 3.0)
    assert z["avg_price_per_unit"] == 0.0
    assert z["avg_purchase_gap_days"] == 2.0


def test_categorical_ids_give_the_same_table(features):
    cat = LINES.astype({c: "category" for c in ("customer_id", "transaction_id", "product_id")})
    pd.testing.assert_frame_equal(compute_features(cat, as_of=AS_OF).sort_index(), features.sort_index())


def test_no_identified_lines_gives_empty_table_with_columns():
    anon = LINES.assign(customer_id=None)
    out = compute_features(anon)
    assert out.empty and list(out.columns) == list(FEATURE_COLUMNS)
    assert out.index.name == "customer_id"


def test_missing_required_column_is_named():
    with pytest.raises(KeyError, match="total_amount"):
        compute_features(LINES.drop(columns="total_amount"))


def _reference(lines: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Plain, obviously-correct pandas groupby version of the definitions, for cross-checking."""
    kept = lines[lines["customer_id"].notna() & (lines["purchase_date"] <= as_of)].copy()
    kept["day"] = kept["purchase_date"].dt.floor("D")
    g = kept.groupby("customer_id")
    out = pd.DataFrame(
        {
            "monetary": g["total_amount"].sum(),
            "frequency": g["transaction_id"].nunique(),
            "total_quantity": g["quantity"].sum(),
            "num_unique_products": g["product_id"].nunique(),
            "avg_price_per_unit": kept[kept["quantity"] > 0].groupby("customer_id")["price_per_unit"].mean(),
            "store_visit_frequency": g["day"].nunique(),
            "first_purchase": g["purchase_date"].min(),
            "last_purchase": g["purchase_date"].max(),
        }
    )
    day = as_of.floor("D")
    first_day = out["first_purchase"].dt.floor("D")
    last_day = out["last_purchase"].dt.floor("D")
    out["active_days"] = (day - first_day).dt.days
    out["recency"] = (day - last_day).dt.days
    span = (last_day - first_day).dt.days
    out["avg_purchase_gap_days"] = (span / (out["store_visit_frequency"] - 1)).where(
        out["store_visit_frequency"] > 1, 0.0
    )
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("clean_transactions", [True, False])
def test_matches_reference_on_random_lines(seed, clean_transactions):
    """Clean: one customer and timestamp per transaction (the fast path); messy: ids shared at random."""
    rng = np.random.default_rng(seed)
    n = 400
    customers = np.array([f"c{i}" for i in range(40)] + [None], dtype=object)
    transaction = rng.integers(0, 150, n)
    if clean_transactions:
        tx_customer = customers[rng.integers(0, len(customers), 150)]
        tx_minute = rng.integers(0, 60 * 24 * 90, 150)
        customer, minute = tx_customer[transaction], tx_minute[transaction]
    else:
        customer = customers[rng.integers(0, len(customers), n)]
        minute = rng.integers(0, 60 * 24 * 90, n)
    lines = pd.DataFrame(
        {
            "customer_id": customer,
            "transaction_id": [f"t{i}" for i in transaction],
            "purchase_date": pd.Timestamp("2023-01-01") + pd.to_timedelta(minute, unit="min"),
            "product_id": [f"p{i}" for i in rng.integers(0, 30, n)],
            "quantity": rng.integers(-3, 6, n).astype(float),
            "price_per_unit": rng.choice([0.0, 1.5, 2.0, 9.99], n),
        }
    )
    lines["total_amount"] = lines["quantity"] * lines["price_per_unit"]
    as_of = pd.Timestamp("2023-03-01 13:00")
    got = compute_features(lines, as_of=as_of).sort_index()
    want = _reference(lines, as_of).reindex(got.index)
    assert len(got) == lines.loc[lines["purchase_date"] <= as_of, "customer_id"].nunique()
    for column in FEATURE_COLUMNS:
        np.testing.assert_allclose(
            got[column].to_numpy(dtype=float)
            if not column.endswith("purchase")
            else got[column].to_numpy().astype("datetime64[ns]").view("int64"),
            want[column].to_numpy(dtype=float)
            if not column.endswith("purchase")
            else want[column].to_numpy().astype("datetime64[ns]").view("int64"),
            err_msg=column,
        )


def test_importing_preprocessing_does_not_import_flask():
    code = (
        "import sys, preprocessing, preprocessing.features, preprocessing.segmentation; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'flask', 'portal', 'app', 'churn_app'}); "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"preprocessing pulled in: {result.stdout} {result.stderr}"


def load_uci_lines() -> pd.DataFrame:
    """UCI Online Retail mapped to canonical lines (the importer's job, done by hand here)."""
    if not UCI.exists():
        pytest.skip(f"real data not found at {UCI}")
    raw = pd.read_csv(
        UCI,
        dtype={"InvoiceNo": "str", "StockCode": "str", "Description": "str", "CustomerID": "float64"},
        encoding="latin-1",
    )
    customer = raw["CustomerID"].astype("Int64").astype("str")  # 12346.0 -> "12346", NaN stays missing
    lines = pd.DataFrame(
        {
            "customer_id": customer.where(raw["CustomerID"].notna()),
            "transaction_id": raw["InvoiceNo"],
            "product_id": raw["StockCode"],
            "product_name": raw["Description"],
            "quantity": raw["Quantity"].astype(float),
            "purchase_date": pd.to_datetime(raw["InvoiceDate"]),
            "price_per_unit": raw["UnitPrice"].astype(float),
        }
    )
    lines["total_amount"] = lines["quantity"] * lines["price_per_unit"]
    return lines


@pytest.mark.slow
def test_real_online_retail_invariants():
    lines = load_uci_lines()
    features = compute_features(lines)
    identified = lines[lines["customer_id"].notna()]
    assert len(features) == identified["customer_id"].nunique()
    assert features.index.is_unique
    assert "12346" in features.index  # ids read as floats come out as the customer's number
    assert (features["frequency"] >= 1).all()
    assert (features["recency"] >= 0).all()
    assert (features["active_days"] >= features["recency"]).all()
    assert (features["frequency"] >= features["store_visit_frequency"]).all()  # an invoice has one date
    assert features["frequency"].sum() == len(identified[["customer_id", "transaction_id"]].drop_duplicates())
    assert features["monetary"].sum() == pytest.approx(identified["total_amount"].sum())
    assert features["last_purchase"].max() == lines["purchase_date"].max()
    # Customers with returns only exist in this file; they are kept with negative money.
    assert (features["monetary"] < 0).any()


@pytest.mark.slow
def test_real_online_retail_tiers_follow_value():
    from preprocessing.segmentation import assign_tiers, eligible, fit_segmentation

    features = compute_features(load_uci_lines())
    result = fit_segmentation(features)
    assert result.n_customers == int(eligible(features).sum()) > 0
    assert list(result.profile.index) == ["Platinum", "Gold", "Silver", "Bronze"]
    assert np.all(np.diff(result.profile["mean_monetary"].to_numpy()) < 0)
    assert -1.0 <= result.silhouette <= 1.0
    tiers = assign_tiers(features, result.scaler, result.kmeans, result.cluster_tiers)
    assert tiers.notna().sum() == result.n_customers


def test_line_without_date_is_ignored():
    lines = make_lines([("A", "T1", "2024-01-01", "p1", 1, 10.0), ("A", "T2", "2024-01-05", "p1", 1, 10.0)])
    lines.loc[1, "purchase_date"] = pd.NaT
    a = compute_features(lines).loc["A"]
    assert (a["monetary"], a["frequency"], a["recency"]) == (10.0, 1, 0)
