"""Features aggregated by the database equal the pandas feature table, value for value.

Scoring on PostgreSQL takes ``customer_features_sql``; a customer's tier, recency or visit count must
not change because the store moved from SQLite to PostgreSQL (or grew past what fits in pandas).
Runs on SQLite by default and on PostgreSQL with DATABASE_URL set.
"""

from functools import cache

import numpy as np
import pandas as pd
import pytest

from portal.services.scores.aggregates import customer_features_sql
from portal.services.scores.dataset import load_lines
from preprocessing.features import FEATURE_COLUMNS, compute_features
from tests.conftest import synthetic_lines


@cache
def _store_lines() -> pd.DataFrame:
    """~4,000 lines of 100 customers over 900 days (built once per run; seed_lines copies it)."""
    return synthetic_lines(n_customers=100)


def _same(sql: pd.DataFrame, pandas: pd.DataFrame) -> None:
    assert list(sql.columns) == list(FEATURE_COLUMNS)
    pd.testing.assert_frame_equal(sql, pandas.sort_index(), check_exact=False, rtol=1e-9, atol=1e-9)


def _line(customer, tx, when, product, qty, price):
    return (
        customer,
        tx,
        pd.Timestamp(when),
        product,
        f"Product {product}",
        float(qty),
        float(price),
        round(float(qty) * float(price), 2),
    )


def _frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows,
        columns=[
            "customer_id",
            "transaction_id",
            "purchase_date",
            "product_id",
            "product_name",
            "quantity",
            "price_per_unit",
            "total_amount",
        ],
    )
    frame["customer_id"] = frame["customer_id"].astype(object).where(frame["customer_id"].notna(), None)
    return frame


EDGE_LINES = [
    # single purchase: one line, one day, gap 0
    _line("SINGLE", "T01", "2026-03-10 12:00", "P1", 2, 4.50),
    # returns only: frequency 1, no price average (nothing bought), negative money
    _line("RETURNS", "T02", "2026-04-01 10:00", "P1", -1, 4.50),
    _line("RETURNS", "T02", "2026-04-01 10:00", "P2", -3, 2.00),
    # zero-price lines count in the average price (a free item is still bought)
    _line("FREEBIE", "T03", "2026-05-01 09:00", "P1", 1, 0.0),
    _line("FREEBIE", "T03", "2026-05-01 09:00", "P2", 2, 6.00),
    _line("FREEBIE", "T04", "2026-05-20 09:00", "P3", 1, 0.0),
    # 23:59 and the next morning: two calendar days, one day apart
    _line("LATE", "T05", "2026-06-01 23:59:59", "P1", 1, 3.00),
    _line("LATE", "T06", "2026-06-02 07:30", "P2", 1, 5.00),
    # a purchase after as_of is ignored for this customer; the other one only buys after it
    _line("SPLIT", "T07", "2026-06-10 10:00", "P1", 1, 3.00),
    _line("SPLIT", "T08", "2026-09-01 10:00", "P3", 5, 9.00),
    _line("LATECOMER", "T09", "2026-09-02 10:00", "P2", 1, 5.00),
    # a transaction id shared by two customers (bad data): each still counts it once
    _line("SHARE_A", "T10", "2026-06-15 10:00", "P1", 1, 3.00),
    _line("SHARE_B", "T10", "2026-06-15 11:00", "P2", 1, 5.00),
    _line("SHARE_A", "T11", "2026-06-15 18:00", "P2", 1, 5.00),
    # anonymous sales, including the store's very last line (it sets the default as_of)
    _line(None, "T12", "2026-06-20 10:00", "P1", 1, 3.00),
    _line(None, "T13", "2026-09-05 20:15", "P3", 1, 9.00),
]


def test_synthetic_store_features_match_pandas(app, db, seed_lines):
    seed_lines(_store_lines())
    lines = load_lines()
    _same(customer_features_sql(), compute_features(lines))


def test_synthetic_store_as_of_in_the_past_matches_pandas(app, db, seed_lines):
    seed_lines(_store_lines())
    as_of = pd.Timestamp("2024-12-31 15:30")
    sql = customer_features_sql(as_of)
    _same(sql, compute_features(load_lines(), as_of))
    assert (sql["last_purchase"] <= as_of).all()
    everyone = compute_features(load_lines())
    assert len(sql) < len(everyone)  # customers who start after as_of are not in the table


def test_edge_cases_match_pandas_and_hand_computed_values(app, db, seed_lines):
    seed_lines(_frame(EDGE_LINES))
    as_of = pd.Timestamp("2026-07-01 12:00")
    sql = customer_features_sql(as_of)
    _same(sql, compute_features(load_lines(), as_of))

    assert "LATECOMER" not in sql.index and set(sql.index) >= {"SINGLE", "RETURNS", "FREEBIE", "LATE", "SPLIT"}
    single = sql.loc["SINGLE"]
    assert (single["frequency"], single["store_visit_frequency"], single["avg_purchase_gap_days"]) == (1, 1, 0.0)
    assert single["monetary"] == pytest.approx(9.0) and single["active_days"] == single["recency"] == 113
    returns = sql.loc["RETURNS"]
    assert returns["frequency"] == 1 and returns["monetary"] == pytest.approx(-10.5)
    assert returns["total_quantity"] == pytest.approx(-4.0) and np.isnan(returns["avg_price_per_unit"])
    assert sql.loc["FREEBIE", "avg_price_per_unit"] == pytest.approx(2.0)  # (0 + 6 + 0) / 3
    late = sql.loc["LATE"]
    assert late["store_visit_frequency"] == 2 and late["avg_purchase_gap_days"] == pytest.approx(1.0)
    assert late["recency"] == 29 and late["active_days"] == 30
    split = sql.loc["SPLIT"]
    assert split["frequency"] == 1 and split["monetary"] == pytest.approx(3.0)
    assert split["last_purchase"] == pd.Timestamp("2026-06-10 10:00")
    assert sql.loc["SHARE_A", "frequency"] == 2 and sql.loc["SHARE_B", "frequency"] == 1


def test_default_as_of_is_the_last_line_even_when_anonymous(app, db, seed_lines):
    seed_lines(_frame(EDGE_LINES))
    sql = customer_features_sql()
    _same(sql, compute_features(load_lines()))
    # the last line is an anonymous sale on 2026-09-05; LATECOMER bought on 09-02
    assert sql.loc["LATECOMER", "recency"] == 3
    assert sql.loc["SPLIT", "frequency"] == 2 and sql.loc["SPLIT", "avg_purchase_gap_days"] == pytest.approx(83.0)


def test_spend_12m_matches_what_scoring_stores(app, db, seed_lines):
    seed_lines(_store_lines())
    lines = load_lines()
    as_of = lines["purchase_date"].max()
    named = lines[lines["customer_id"].notna()]
    recent = named["purchase_date"] > as_of - pd.Timedelta(days=365)
    expected = named.loc[recent].groupby("customer_id", observed=True)["total_amount"].sum()
    sql = customer_features_sql(spend_12m=True)
    expected = expected.reindex(sql.index).fillna(0.0)
    assert (sql["spend_12m"] == 0).any() and (sql["spend_12m"] > 0).any()
    np.testing.assert_allclose(sql["spend_12m"].to_numpy(), expected.to_numpy(), rtol=1e-9)
    _same(sql[list(FEATURE_COLUMNS)], compute_features(lines))


def test_no_lines_gives_an_empty_table_like_pandas(app, db):
    sql = customer_features_sql()
    expected = compute_features(load_lines())
    assert sql.empty
    pd.testing.assert_frame_equal(sql, expected)
