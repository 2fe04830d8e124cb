"""The deterministic demo store and sample files (preprocessing.synthetic)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import phonenumbers
import pytest

from preprocessing.columns import ValidationState, detect_mapping, missing_required, read_table, validate_chunk
from preprocessing.synthetic import (
    BUNDLE_DEAD_STOCK,
    BUNDLES,
    STOCK_COLUMNS,
    TRANSACTION_COLUMNS,
    generate_lines,
    generate_store,
    write_demo,
)


@pytest.fixture(scope="module")
def store() -> dict[str, pd.DataFrame]:
    return generate_store()


def test_same_seed_writes_the_same_bytes(tmp_path):
    first = write_demo(tmp_path / "a", n_customers=60, seed=3)
    second = write_demo(tmp_path / "b", n_customers=60, seed=3)
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in second]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
    other = write_demo(tmp_path / "c", n_customers=60, seed=4)
    assert other[0].read_bytes() != first[0].read_bytes()


def test_demo_size_and_layout(store):
    tx = store["transactions"]
    assert list(tx.columns) == TRANSACTION_COLUMNS
    assert list(store["stock"].columns) == STOCK_COLUMNS
    assert 70_000 <= len(tx) <= 95_000
    assert tx.loc[tx["customer_id"] != "", "customer_id"].nunique() == 5000
    assert len(store["stock"]) == 300 and tx["product_id"].nunique() <= 300
    span = tx["purchase_date"].max() - tx["purchase_date"].min()
    assert pd.Timedelta(days=700) <= span <= pd.Timedelta(days=731)
    assert tx["purchase_date"].max() <= pd.Timestamp(date(2026, 10, 31)) + pd.Timedelta(days=1)
    assert set(tx["store"]) == {"Downtown", "Harbor", "Uptown"}
    assert dict(zip(store["stores"]["store"], store["stores"]["timezone"])) == {
        "Downtown": "America/New_York",
        "Harbor": "America/Chicago",
        "Uptown": "America/Los_Angeles",
    }


def test_popularity_is_skewed(store):
    counts = store["transactions"]["product_id"].value_counts()
    top_decile = counts.head(len(counts) // 10).sum() / counts.sum()
    assert top_decile > 0.4


def test_dead_stock_share_includes_bundle_products(store):
    stock = store["stock"]
    ratio = stock["total_sold"] / stock["initial_stock"]
    assert 0.13 <= (ratio < 0.6).mean() <= 0.17
    dead_names = set(stock.loc[ratio < 0.6, "product_name"])
    assert set(BUNDLE_DEAD_STOCK) <= dead_names
    sold = store["transactions"].groupby("product_id")["quantity"].sum().clip(lower=0)
    assert (stock.set_index("product_id")["total_sold"] == sold.reindex(stock["product_id"]).fillna(0)).all()


def test_planted_bundles_reach_their_support(store):
    tx = store["transactions"]
    n_baskets = tx["transaction_id"].nunique()
    for products, share in BUNDLES:
        holding = tx[tx["product_name"].isin(products)].groupby("transaction_id")["product_name"].nunique()
        support = (holding == len(products)).sum() / n_baskets
        assert support >= share * 0.8, products
    top = BUNDLES[0][0]
    holding = tx[tx["product_name"].isin(top)].groupby("transaction_id")["product_name"].nunique()
    assert (holding == 2).sum() / n_baskets >= 0.1  # found at the default min_support


def test_returns_are_about_one_percent(store):
    tx = store["transactions"]
    returns = tx[tx["quantity"] < 0]
    assert 0.005 <= len(returns) / len(tx) <= 0.015
    assert (returns["total_amount"] < 0).all() and (returns["customer_id"] != "").all()


def test_customers_differ_and_some_stop_buying(store):
    tx = store["transactions"]
    known = tx[tx["customer_id"] != ""]
    frequency = known.groupby("customer_id")["transaction_id"].nunique()
    monetary = known.groupby("customer_id")["total_amount"].sum()
    reach_tier = ((frequency >= 15) | (monetary >= 30_000)).mean()
    assert 0.2 <= reach_tier <= 0.4
    last = known.groupby("customer_id")["purchase_date"].max()
    end = tx["purchase_date"].max()
    lapsed_regulars = ((frequency >= 5) & (last < end - pd.Timedelta(days=180))).sum()
    assert lapsed_regulars >= 100  # buyers with a history who stopped: churn has signal
    assert frequency.quantile(0.9) >= 4 * frequency.median()


def test_phones_are_fictional_valid_and_unique(store):
    phones = store["customers"]["phone"]
    numbers = phones[phones != ""]
    assert numbers.is_unique and len(numbers) >= 4500
    assert numbers.str.fullmatch(r"\+1\d{3}55501\d{2}").all()
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(n)) for n in numbers)
    mobiles = store["transactions"]["Mobile"]
    assert set(mobiles[mobiles != ""]) <= set(numbers)


def test_sms_consent_is_recorded_for_most(store):
    customers = store["customers"]
    consent = customers["sms_consent"]
    assert (consent != "").mean() >= 0.75
    assert (consent == "yes").mean() >= 0.6 and (consent == "no").any()
    assert (customers.loc[consent == "yes", "sms_consent_date"] != "").all()
    assert (customers.loc[customers["phone"] == "", "sms_consent"] == "").all()
    assert customers["email"].str.endswith("@example.com").where(customers["email"] != "", True).all()


def test_generate_lines_is_exact_and_deterministic():
    lines = generate_lines(50_000, seed=5)
    assert len(lines) == 50_000 and list(lines.columns) == TRANSACTION_COLUMNS
    assert lines.equals(generate_lines(50_000, seed=5))
    assert not lines.equals(generate_lines(50_000, seed=6))
    phones = lines.loc[lines["Mobile"] != "", "Mobile"].drop_duplicates().head(200)
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(p)) for p in phones)
    assert 0.005 <= (lines["quantity"] < 0).mean() <= 0.02


SAMPLES = {
    "transactions_loyalist.csv": ("transactions", "loyalist"),
    "transactions_uci.csv": ("transactions", "uci_online_retail"),
    "transactions_cdnow.csv": ("transactions", "cdnow"),
    "transactions_semicolon_latin1.csv": ("transactions", "generic"),
    "transactions.xlsx": ("transactions", "loyalist"),
    "stock.csv": ("stock", "generic"),
    "customers.csv": ("customers", "generic"),
}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    write_demo(out, n_customers=80, seed=42)
    return out / "samples"


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_imports_cleanly(samples, name):
    kind, layout = SAMPLES[name]
    with read_table(samples / name, name) as reader:
        mapping = detect_mapping(reader.headers, kind)
        assert mapping.layout == layout
        assert missing_required(mapping, kind) == []
        state = ValidationState()
        results = [validate_chunk(chunk, mapping, kind, state=state) for chunk in reader]
    clean = pd.concat([c for c, _ in results])
    errors = pd.concat([e for _, e in results])
    assert errors.empty
    assert 30 <= len(clean) <= 250


def test_error_sample_reports_its_bad_rows(samples):
    with read_table(samples / "transactions_with_errors.csv", "x.csv") as reader:
        mapping = detect_mapping(reader.headers, "transactions")
        clean, errors = validate_chunk(next(iter(reader)), mapping, "transactions")
    assert len(clean) == 24
    assert errors["reason"].str.contains("unparseable date").sum() == 2
    assert errors["reason"].eq("not a number").sum() == 2
    assert errors["reason"].str.startswith("invalid phone").sum() == 2
    assert set(errors.loc[errors["level"] == "warning", "column"]) == {"Mobile"}


def test_sample_files_keep_text_ids(samples):
    with read_table(samples / "transactions_cdnow.csv", "cdnow.csv") as reader:
        first = reader.preview(1)
    assert first["customer"].iloc[0].startswith("0")
    with read_table(samples / "transactions_semicolon_latin1.csv", "semi.csv") as reader:
        assert reader.encoding == "latin-1" and reader.delimiter == ";"
        assert any("é" in name or "à" in name for name in pd.concat(list(reader))["item"])
