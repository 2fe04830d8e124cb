"""Scoring's inputs aggregated by the database equal the ones pandas builds from every line.

On PostgreSQL ``scoring.rescore_all`` never loads the purchase lines: features, ``spend_12m``, the
churn trend windows and the CLV purchase-day totals come from GROUP BYs in the database. A
customer's tier, churn band or lifetime value must not change because of which path computed them.
The SQL aggregates also run on SQLite, so both paths are compared on whichever database the suite
runs on (SQLite by default, PostgreSQL with DATABASE_URL set).
"""

from functools import cache

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from portal.models import Customer, PurchaseLine
from portal.services import settings as settings_service
from portal.services.scores import aggregates, scoring, training
from portal.services.scores.dataset import load_lines
from preprocessing import churn, clv
from tests.conftest import synthetic_lines

TOL = {"check_exact": False, "rtol": 1e-9, "atol": 1e-9}


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


AS_OF = pd.Timestamp("2026-07-01 12:00")  # last window (04-02 12:00, 07-01 12:00], prev (01-02 12:00, 04-02 12:00]
EDGE_LINES = [
    # exactly as_of - 90 days is in the previous window; one microsecond later in the last one
    _line("EDGE90", "T01", "2026-04-02 12:00:00", "P1", 1, 4.00),
    _line("EDGE90", "T02", "2026-04-02 12:00:00.000001", "P2", 2, 2.50),
    # exactly as_of - 180 days is in neither window; one second later in the previous one
    _line("EDGE180", "T03", "2026-01-02 12:00:00", "P1", 1, 4.00),
    _line("EDGE180", "T04", "2026-01-02 12:00:01", "P1", 3, 4.00),
    # exactly at as_of counts; later that day only the CLV purchase days see it; the next day nothing does
    _line("ATASOF", "T08", "2026-06-01 10:00", "P1", 2, 4.00),
    _line("ATASOF", "T05", "2026-07-01 12:00", "P1", 1, 4.00),
    _line("ATASOF", "T06", "2026-07-01 18:00", "P2", 1, 2.50),
    _line("ATASOF", "T07", "2026-07-02 09:00", "P3", 1, 9.00),
    # returns: net spend, not a purchase (no visit in the window, no CLV purchase day)
    _line("RETURNER", "T09", "2026-05-10 10:00", "P1", 3, 4.00),
    _line("RETURNER", "T10", "2026-05-12 10:00", "P1", -1, 4.00),
    _line("RETURNER", "T11", "2026-02-01 10:00", "P2", -2, 2.50),
    # one visit
    _line("SINGLE", "T12", "2026-03-10 12:00", "P1", 2, 4.50),
    # two transactions on one day are one CLV purchase day
    _line("SAMEDAY", "T13", "2026-06-20 09:00", "P1", 1, 4.00),
    _line("SAMEDAY", "T14", "2026-06-20 17:00", "P2", 1, 2.50),
    _line("SAMEDAY", "T15", "2026-06-25 09:00", "P3", 1, 9.00),
    # a free item is a visit but not a CLV purchase day (no positive spend)
    _line("ZERO", "T16", "2026-06-05 10:00", "P1", 1, 0.00),
    _line("ZERO", "T17", "2026-06-06 10:00", "P2", 1, 2.50),
    # anonymous sales, the store's very last line among them
    _line(None, "T18", "2026-06-30 10:00", "P1", 5, 4.00),
    _line(None, "T19", "2026-07-03 10:00", "P3", 1, 9.00),
]


@cache
def _store_lines() -> pd.DataFrame:
    """A synthetic store with returns (separate return invoices) and anonymous sales mixed in."""
    lines = synthetic_lines(n_customers=150)
    rng = np.random.default_rng(11)
    transactions = lines["transaction_id"].unique()
    anonymous = rng.choice(transactions, size=len(transactions) // 20, replace=False)
    lines["customer_id"] = lines["customer_id"].astype(object).where(~lines["transaction_id"].isin(anonymous), None)
    named = lines[lines["customer_id"].notna()]
    returned = named.iloc[rng.choice(len(named), size=len(named) // 30, replace=False)].copy()
    returned["transaction_id"] = "R" + returned["transaction_id"].str[1:]
    returned["purchase_date"] = returned["purchase_date"] + pd.Timedelta(days=3, hours=2)
    returned["quantity"] = -1.0
    returned["total_amount"] = -returned["price_per_unit"]
    returned = returned.drop_duplicates(["transaction_id", "product_id"])
    return pd.concat([lines, returned], ignore_index=True)


def _same_inputs(sql: scoring.ScoringInputs, pandas: scoring.ScoringInputs) -> None:
    assert sql.as_of == pandas.as_of
    pd.testing.assert_frame_equal(sql.features, pandas.features, **TOL)
    pd.testing.assert_series_equal(sql.spend_12m, pandas.spend_12m, check_names=False, **TOL)
    pd.testing.assert_frame_equal(sql.churn_features(), pandas.churn_features(), **TOL)
    expected = pandas.rfm_summary()
    expected.index = expected.index.astype(str)  # load_lines' categorical ids
    got = sql.rfm_summary()
    pd.testing.assert_frame_equal(got, expected, **TOL)
    assert got.attrs == expected.attrs


def test_sql_inputs_equal_pandas_inputs_on_a_store_with_returns_and_anonymous_sales(app, db, seed_lines):
    seed_lines(_store_lines())
    sql, pandas = scoring.inputs_from_database(), scoring.inputs_from_lines(load_lines())
    _same_inputs(sql, pandas)
    feats = sql.churn_features()
    # the data exercise what is compared: returns, both windows, single visits, non-repeaters
    assert (feats["spend_last_90d"] > 0).any() and (feats["spend_prev_90d"] > 0).any()
    assert (feats["purchases_last_90d"] == 0).any() and (feats["single_visit"] == 1).any()
    assert (sql.spend_12m == 0).any() and (sql.spend_12m > 0).any()
    assert (sql.rfm_summary()["frequency"] == 0).any()


def test_edge_cases_match_pandas_and_hand_computed_values(app, db, seed_lines):
    seed_lines(_frame(EDGE_LINES))
    lines = load_lines()

    windows = aggregates.churn_windows_sql(AS_OF)
    expected_windows = churn.trend_windows(lines, AS_OF)
    expected_windows.index = expected_windows.index.astype(str)
    pd.testing.assert_frame_equal(windows, expected_windows.sort_index(), **TOL)
    by_hand = {  # spend_last, purchases_last, spend_prev, purchases_prev
        "EDGE90": (5.0, 1, 4.0, 1),
        "EDGE180": (0.0, 0, 12.0, 1),
        "ATASOF": (12.0, 2, 0.0, 0),
        "RETURNER": (8.0, 1, -5.0, 0),
        "SINGLE": (0.0, 0, 9.0, 1),
        "SAMEDAY": (15.5, 3, 0.0, 0),
        "ZERO": (2.5, 2, 0.0, 0),
    }
    assert set(windows.index) == set(by_hand)  # anonymous lines have no row
    for customer, values in by_hand.items():
        assert tuple(windows.loc[customer, churn.WINDOW_COLUMNS]) == pytest.approx(values), customer

    feats = churn.churn_features_from(aggregates.customer_features_sql(AS_OF), windows)
    pd.testing.assert_frame_equal(feats, churn.churn_features(lines, AS_OF), **TOL)
    assert feats.loc["RETURNER", "spend_trend"] == pytest.approx(1.0)
    assert feats.loc["SINGLE", "single_visit"] == 1 and feats.loc["SINGLE", "recency_gap_ratio"] == 0.0
    assert feats.loc["ATASOF", "recency"] == 0 and feats.loc["ATASOF", "frequency"] == 2

    summary = clv.rfm_summary_from_day_totals(aggregates.clv_day_totals_sql(AS_OF), AS_OF)
    expected = clv.rfm_summary(lines, as_of=AS_OF)
    expected.index = expected.index.astype(str)
    pd.testing.assert_frame_equal(summary, expected, **TOL)
    assert "ZERO" in summary.index and summary.loc["ZERO", "frequency"] == 0  # the free item's day is no purchase
    atasof = summary.loc["ATASOF"]  # 06-01 (8.00) and 07-01 (4.00 + 2.50 at 18:00); 07-02 ignored
    assert (atasof["frequency"], atasof["recency"], atasof["T"]) == (1, 30.0, 30.0)
    assert atasof["monetary_value"] == pytest.approx(6.5)
    assert summary.loc["SAMEDAY", "frequency"] == 1 and summary.loc["SAMEDAY", "monetary_value"] == pytest.approx(9.0)
    returner = summary.loc["RETURNER"]
    assert (returner["frequency"], returner["T"], returner["monetary_value"]) == (0, 52.0, 0.0)


def test_edge_cases_scoring_inputs_agree_with_the_last_line_anonymous(app, db, seed_lines):
    seed_lines(_frame(EDGE_LINES))
    sql, pandas = scoring.inputs_from_database(), scoring.inputs_from_lines(load_lines())
    assert sql.as_of == pd.Timestamp("2026-07-03 10:00")  # the anonymous last sale sets as_of
    _same_inputs(sql, pandas)


def test_no_named_lines_gives_no_inputs_either_way(app, db, seed_lines):
    assert scoring.inputs_from_database() is None and scoring.inputs_from_lines(load_lines()) is None
    seed_lines(
        _frame(
            [
                _line(None, "T01", "2026-06-30 10:00", "P1", 5, 4.00),
                _line("GONE", "T02", "2026-06-30 11:00", "P1", 1, 4.00),
            ]
        )
    )
    db.session.execute(PurchaseLine.__table__.delete().where(PurchaseLine.customer_id.isnot(None)))
    db.session.commit()  # only the anonymous sale is left (a customer row without lines)
    assert scoring.inputs_from_database() is None and scoring.inputs_from_lines(load_lines()) is None
    assert aggregates.churn_windows_sql(AS_OF).empty and aggregates.clv_day_totals_sql(AS_OF).empty


def _stored_scores(db) -> pd.DataFrame:
    columns = [
        "external_id",
        "tier",
        "churn_band",
        "churn_reasons",
        "churn_probability",
        "p_alive",
        "p_return_12m",
        "expected_purchases_90d",
        "clv_12m",
        "monetary",
        "spend_12m",
        "frequency",
        "recency",
        "store_visit_frequency",
        "avg_purchase_gap_days",
        "first_purchase_at",
        "last_purchase_at",
    ]
    rows = db.session.execute(select(*(getattr(Customer, c) for c in columns))).all()
    frame = pd.DataFrame(rows, columns=columns).set_index("external_id").sort_index()
    for col in ("monetary", "spend_12m", "clv_12m"):
        frame[col] = frame[col].astype(float)
    return frame


def test_rescore_stores_the_same_scores_whichever_path_computes_them(app, db, seed_lines, monkeypatch):
    seed_lines(_store_lines())
    settings_service.update({"tiers.bar": "fixed", "tier.min_frequency": "5", "tier.min_monetary": "2000"})
    training.train_all()

    monkeypatch.setattr(aggregates, "use_sql_features", lambda: False)
    by_pandas = scoring.rescore_all(reason="pandas path")
    pandas_scores = _stored_scores(db)

    def no_lines(*_args, **_kwargs):
        raise AssertionError("the SQL path must not load every purchase line")

    monkeypatch.setattr(aggregates, "use_sql_features", lambda: True)
    monkeypatch.setattr(scoring, "load_lines", no_lines)
    db.session.execute(
        Customer.__table__.update().values(
            churn_probability=None, churn_band=None, p_alive=None, clv_12m=None, monetary=None, spend_12m=None
        )
    )
    db.session.commit()
    by_sql = scoring.rescore_all(reason="sql path")
    sql_scores = _stored_scores(db)

    assert by_sql == by_pandas and by_sql["up"] == by_sql["down"] == 0
    assert pandas_scores["churn_probability"].notna().sum() == by_sql["scored"]
    assert pandas_scores["clv_12m"].notna().sum() == by_sql["scored"]
    assert pandas_scores["tier"].notna().any() and (pandas_scores["churn_band"] == "High").any()
    exact = [
        "tier",
        "churn_band",
        "churn_reasons",
        "frequency",
        "recency",
        "store_visit_frequency",
        "first_purchase_at",
        "last_purchase_at",
    ]
    pd.testing.assert_frame_equal(sql_scores[exact], pandas_scores[exact])
    close = [c for c in sql_scores.columns if c not in exact]
    pd.testing.assert_frame_equal(sql_scores[close], pandas_scores[close], **TOL)
