"""The dashboard: KPIs that match the lists they link to, store scoping, charts, cohorts and the outlook."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import datetime
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from portal.models import Campaign, Customer, OutboxMessage, Product, PurchaseLine, StockLevel
from portal.services import settings as settings_service
from portal.services.dashboard import numbers as dashboard_service
from portal.services.scores import outlook as outlook_service
from portal.services.scores import scoring, training
from tests.conftest import prefixed_lines, synthetic_lines

KPI = re.compile(r'<a class="kpi" href="([^"]+)">([^<]+)</a>')


def _number(text: str) -> float:
    """'$1,234.50' / '1,234' / '12 sent' -> 1234.5 / 1234 / 12."""
    match = re.search(r"-?[\d,]+(\.\d+)?", text.replace("−", "-"))
    assert match, text
    return float(match.group(0).replace(",", ""))


def _kpis(client, path="/") -> list[tuple[str, str]]:
    page = client.get(path)
    assert page.status_code == 200
    return [(html.unescape(h), html.unescape(v).strip()) for h, v in KPI.findall(page.get_data(as_text=True))]


def _csv_rows(client, href: str) -> int:
    sep = "&" if "?" in href else "?"
    response = client.get(href + sep + "format=csv&include_opted_out=1")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return len(list(csv.reader(io.StringIO(response.get_data(as_text=True))))) - 1


def _trained(seed_lines, frame=None, store=None):
    store = seed_lines(frame if frame is not None else synthetic_lines(), store=store)
    settings_service.update({"tiers.bar": "fixed", "tier.min_frequency": "5", "tier.min_monetary": "2000"})
    training.train_segmentation(rescore=False)
    training.train_churn(rescore=False)
    scoring.rescore_all()
    return store


def _stock_and_campaign(db, store):
    """Stock rows (dead, healthy, unpriced, invalid) and a finished campaign with outbox rows."""
    products = db.session.scalars(select(Product).order_by(Product.id)).all()[:5]
    for product, price in zip(products, (Decimal("10.00"), Decimal("4.50"), None, Decimal("3"), Decimal("7"))):
        product.price = price
    rows = [(100, 10), (40, 39), (50, 5), (0, 0), (200, 30)]  # ratio .1 dead, .975 ok, dead unpriced, invalid, dead
    for product, (initial, sold) in zip(products, rows):
        db.session.add(StockLevel(product_id=product.id, store_id=store.id, initial_stock=initial, total_sold=sold))
    campaign = Campaign(name="Winback", store_id=store.id, template="Hi {first_name}", status="done")
    db.session.add(campaign)
    db.session.flush()
    ids = db.session.scalars(select(Customer.id).where(Customer.store_id == store.id).order_by(Customer.id)).all()
    statuses = ["sent"] * 3 + ["delivered"] * 2 + ["failed"] + ["control"] * 2
    for cid, status in zip(ids, statuses):
        db.session.add(
            OutboxMessage(
                campaign_id=campaign.id,
                customer_id=cid,
                status=status,
                group="control" if status == "control" else "message",
            )
        )
    db.session.commit()
    return campaign


def test_empty_dashboard_says_what_to_do(client, login_as):
    login_as("admin")
    page = client.get("/").get_data(as_text=True)
    assert "No customers yet" in page and "Import purchase data" in page
    assert "Cohort retention" not in page


def test_dashboard_with_data_has_kpis_charts_and_tables(client, login_as, db, seed_lines):
    _trained(seed_lines)
    login_as("admin")
    page = client.get("/").get_data(as_text=True)
    for text in (
        "Customers",
        "Active, last 90 days",
        "Revenue, last 30 days",
        "High churn risk",
        "Platinum",
        "the day of the latest purchase in the data",
    ):
        assert text in page
    reference = dashboard_service.reference_time()
    assert reference.strftime("%Y-%m-%d") in page  # the reference day is named
    for chart_id in ("tier-chart", "band-chart", "revenue-tier-chart"):
        assert f'data-chart="{chart_id}"' in page and f'id="{chart_id}"' in page
    assert page.count("Show as a table") >= 3
    assert 'class="table table-sm table-bordered cohort-table"' in page and "heat-" in page
    assert "No lifetime-value model yet" in page  # CLV not trained: an honest empty state
    assert "No stock file imported yet" in page and "No campaign yet" in page
    assert "style=" not in page and "<script>" not in page  # CSP: no inline styles or scripts


def test_every_kpi_link_lands_on_a_list_with_the_same_count(client, login_as, db, seed_lines):
    store = _trained(seed_lines)
    campaign = _stock_and_campaign(db, store)
    login_as("admin")
    kpis = _kpis(client)
    targets = {urlsplit(href).path for href, _ in kpis}
    assert {"/customers", "/churn", "/bundles", f"/campaigns/{campaign.id}"} <= targets
    checked = 0
    for href, value in kpis:
        path, query = urlsplit(href).path, dict(parse_qsl(urlsplit(href).query))
        if path == "/customers" and value[0].isdigit():  # counts (the revenue's link is checked below)
            assert _csv_rows(client, href) == _number(value), (href, value)
            checked += 1
        elif path == "/churn":
            assert query == {"band": "High"}
            churn = client.get(href).get_data(as_text=True)
            card = re.search(r'High risk</a></h2>\s*<div class="kpi">([^<]+)</div>', churn)
            assert _number(card.group(1)) == _number(value)
            expected = db.session.scalar(
                select(func.count())
                .select_from(Customer)
                .where(Customer.churn_band == "High", Customer.lifecycle.is_distinct_from("Lost"))
            )  # the savable ones: lost customers are counted apart
            assert _number(value) == expected
            checked += 1
        elif path == "/bundles":
            bundles = client.get(href).get_data(as_text=True)
            tied = re.search(r"(\$[\d,.]+) tied up in unsold units", bundles)
            assert tied and _number(tied.group(1)) == _number(value) == (100 - 10) * 10 + (200 - 30) * 7
            assert "1 without a price" in bundles
            checked += 1
        elif path.startswith("/campaigns/"):
            detail = client.get(href).get_data(as_text=True)
            progress = detail.split('id="campaign-progress-detail">')[1].split("</p>")[0]
            counts = {s: int(n) for s, n in re.findall(r"(\w[\w -]*): (\d+)", progress)}
            assert _number(value) == counts["sent"] + counts["delivered"] == 5
            checked += 1
    assert checked >= 9  # customers, active, 4 tiers + no tier, High risk, dead stock, campaign
    page = client.get("/").get_data(as_text=True)
    recent = re.search(r'<a href="([^"]+)">([\d,]+) customers</a> bought', page)
    assert _csv_rows(client, html.unescape(recent.group(1))) == _number(recent.group(2))


def test_revenue_kpi_compares_the_last_30_days_with_the_30_before(client, login_as, db, seed_lines):
    frame = pd.DataFrame(
        [  # reference day 2026-03-31; windows 03-02 .. 03-31 and 01-31 .. 03-01 (whole days)
            ("C1", "T1", pd.Timestamp("2026-03-31 18:00"), "P1", "P", 1, 100.0, 100.0),
            ("C1", "T2", pd.Timestamp("2026-03-02 00:00"), "P1", "P", 1, 50.0, 50.0),
            ("C2", "T3", pd.Timestamp("2026-03-01 23:59"), "P1", "P", 1, 80.0, 80.0),
            ("C2", "T4", pd.Timestamp("2026-03-10 12:00"), "P1", "P", -1, 20.0, -20.0),  # a return
            (None, "T5", pd.Timestamp("2026-02-01 09:00"), "P1", "P", 1, 40.0, 40.0),  # anonymous, counts
            ("C3", "T6", pd.Timestamp("2026-01-30 23:00"), "P1", "P", 1, 999.0, 999.0),  # before both windows
        ],
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
    seed_lines(frame)
    scoring.rescore_all()
    user = login_as("admin")
    scope = dashboard_service.resolve_scope(user, None)
    revenue = dashboard_service.revenue_kpis(scope, dashboard_service.reference_time())
    assert revenue["current"] == pytest.approx(130.0) and revenue["previous"] == pytest.approx(120.0)
    assert revenue["change"] == pytest.approx(10 / 120)
    page = client.get("/").get_data(as_text=True)
    assert "$130.00" in page and "$120.00" in page and "+8.3 %" in page


def _by_link(kpis) -> dict[str, str]:
    return {urlsplit(h).path + "?" + urlsplit(h).query: v for h, v in kpis}


def test_manager_sees_only_their_store(client, login_as, db, seed_lines, make_store, make_user):
    north = _trained(seed_lines, synthetic_lines(n_customers=200, seed=3), store=make_store("North"))
    south = seed_lines(prefixed_lines(synthetic_lines(n_customers=90, seed=5), "S"), store=make_store("South"))
    scoring.rescore_all()
    _stock_and_campaign(db, south)
    manager = login_as("manager", store=north)
    mine = _by_link(_kpis(client))
    assert _number(mine["/customers?"]) == 200
    page = client.get("/").get_data(as_text=True)
    assert "Winback" not in page and "No campaign yet" in page  # South's campaign
    assert "No stock file imported yet" in page  # South's stock
    north_30 = dashboard_service.revenue_kpis(
        dashboard_service.resolve_scope(manager, None), dashboard_service.reference_time()
    )["current"]
    everyone_30 = dashboard_service.revenue_kpis(
        dashboard_service.Scope(user=make_user("admin")), dashboard_service.reference_time()
    )["current"]
    since = pd.Timestamp(dashboard_service.reference_time()).normalize() - pd.Timedelta(days=29)
    north_lines = db.session.scalar(
        select(func.sum(PurchaseLine.amount)).where(
            PurchaseLine.store_id == north.id, PurchaseLine.purchased_at >= since.to_pydatetime()
        )
    )
    assert north_30 == pytest.approx(float(north_lines)) and everyone_30 > north_30
    assert f"${north_30:,.2f}" in page
    # Asking for another store changes nothing for a manager, and offers no store switcher.
    assert _by_link(_kpis(client, "/?store=South")) == mine
    assert 'name="store"' not in page


def test_admin_switches_store_and_links_keep_the_store(client, login_as, db, seed_lines, make_store):
    seed_lines(synthetic_lines(n_customers=200, seed=3), store=make_store("North"))
    south = seed_lines(prefixed_lines(synthetic_lines(n_customers=90, seed=5), "S"), store=make_store("South"))
    scoring.rescore_all()
    _stock_and_campaign(db, south)
    login_as("admin")
    page = client.get("/").get_data(as_text=True)
    assert '<option value="South"' in page  # the store switcher
    assert _number(_by_link(_kpis(client))["/customers?"]) == 290
    south_kpis = _kpis(client, "/?store=South")
    assert south_kpis and all("store=South" in h for h, v in south_kpis if v != "—" and not h.startswith("/campaigns/"))
    assert _number(_by_link(south_kpis)["/customers?store=South"]) == 90
    for href, value in south_kpis:
        if urlsplit(href).path == "/customers" and value[0].isdigit():
            assert _csv_rows(client, href) == _number(value)
    assert "Winback" in client.get("/?store=South").get_data(as_text=True)
    assert "Winback" not in client.get("/?store=North").get_data(as_text=True)
    assert client.get("/?store=Nowhere").status_code == 404


def test_month_bucketing_in_the_database(app, db, seed_lines):
    frame = pd.DataFrame(
        [
            ("C1", "T1", pd.Timestamp("2025-12-31 23:59:59"), "P1", "P", 1, 1.0, 1.0),
            ("C1", "T2", pd.Timestamp("2026-01-01 00:00:00"), "P1", "P", 1, 2.0, 2.0),
            ("C1", "T3", pd.Timestamp("2026-01-31 23:59:59"), "P1", "P", 1, 4.0, 4.0),
            ("C1", "T4", pd.Timestamp("2026-02-01 00:00:01"), "P1", "P", 1, 8.0, 8.0),
        ],
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
    seed_lines(frame)
    dialect = dashboard_service.dialect_name()
    key = dashboard_service.month_key(PurchaseLine.purchased_at, dialect)
    index = dashboard_service.month_index(PurchaseLine.purchased_at, dialect)
    rows = db.session.execute(select(key, index).order_by(PurchaseLine.purchased_at)).all()
    assert [r[0] for r in rows] == ["2025-12", "2026-01", "2026-01", "2026-02"]
    assert [r[1] for r in rows] == [2025 * 12 + 11, 2026 * 12, 2026 * 12, 2026 * 12 + 1]
    assert [dashboard_service.index_to_month(r[1]) for r in rows] == [r[0] for r in rows]
    sums = dict(db.session.execute(select(key.label("m"), func.sum(PurchaseLine.amount)).group_by(key)).all())
    assert {k: float(v) for k, v in sums.items()} == {"2025-12": 1.0, "2026-01": 6.0, "2026-02": 8.0}
    # Each backend gets its own SQL: strftime on SQLite, date_trunc/to_char on PostgreSQL.
    pg = str(dashboard_service.month_key(PurchaseLine.purchased_at, "postgresql").compile(dialect=postgresql.dialect()))
    lite = str(dashboard_service.month_key(PurchaseLine.purchased_at, "sqlite").compile(dialect=sqlite.dialect()))
    assert "date_trunc('month'" in pg and "to_char" in pg and "strftime('%Y-%m'" in lite


def test_revenue_by_tier_groups_month_and_tier(app, db, seed_lines, login_as):
    frame = pd.DataFrame(
        [
            ("C1", "T1", pd.Timestamp("2026-01-15"), "P1", "P", 1, 10.0, 10.0),
            ("C1", "T2", pd.Timestamp("2026-02-15"), "P1", "P", 1, 20.0, 20.0),
            ("C2", "T3", pd.Timestamp("2026-02-20"), "P1", "P", 1, 5.0, 5.0),
            (None, "T4", pd.Timestamp("2026-02-21"), "P1", "P", 1, 7.0, 7.0),
        ],
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
    seed_lines(frame)
    db.session.execute(Customer.__table__.update().where(Customer.external_id == "C1").values(tier="Gold"))
    db.session.commit()
    user = login_as("admin")
    spec = dashboard_service.revenue_by_tier(
        dashboard_service.resolve_scope(user, None), dashboard_service.reference_time(), months=3
    )
    assert spec["labels"] == ["2025-12", "2026-01", "2026-02"]
    data = {d["label"]: d["data"] for d in spec["datasets"]}
    assert data == {"Gold": [0, 10.0, 20.0], "No tier": [0, 0, 5.0], "Anonymous": [0, 0, 7.0]}


def test_cohort_retention_on_a_hand_made_example(client, login_as, db, seed_lines):
    rows = [  # (customer, date, amount)
        ("A", "2026-01-05", 10),
        ("A", "2026-02-10", 10),
        ("A", "2026-04-01", 10),
        ("B", "2026-01-20", 10),
        ("B", "2026-03-03", 10),
        ("B", "2026-02-01", -10),  # a return is not buying
        ("C", "2026-02-14", 10),
        ("C", "2026-03-30", 10),
        (None, "2026-04-10", 10),  # anonymous: in no cohort; sets the reference day (April)
    ]
    frame = pd.DataFrame(
        [
            (c, f"T{i}", pd.Timestamp(d), "P1", "P", 1 if a > 0 else -1, abs(a), float(a))
            for i, (c, d, a) in enumerate(rows)
        ],
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
    seed_lines(frame)
    user = login_as("admin")
    table = dashboard_service.cohort_retention(
        dashboard_service.resolve_scope(user, None), dashboard_service.reference_time(), months=5
    )
    by_cohort = {r["cohort"]: r for r in table["rows"]}
    assert list(by_cohort) == ["2026-01", "2026-02"]
    jan, feb = by_cohort["2026-01"], by_cohort["2026-02"]
    assert jan["size"] == 2 and feb["size"] == 1
    assert [c and c["share"] for c in jan["cells"]] == [1.0, 0.5, 0.5, 0.5, None]
    assert [c and c["share"] for c in feb["cells"]] == [1.0, 1.0, 0.0, None, None]
    assert [c and c["heat"] for c in jan["cells"][:4]] == [9, 5, 5, 5]
    page = client.get("/").get_data(as_text=True)
    assert 'heat heat-5" title="1 of 2 customers">50 %</td>' in page
    assert "not yet" in page


def _two_stores_with_clv(seed_lines, make_store):
    north = seed_lines(synthetic_lines(n_customers=250, seed=7), store=make_store("North"))
    south = seed_lines(prefixed_lines(synthetic_lines(n_customers=120, seed=9), "S"), store=make_store("South"))
    return north, south


def test_outlook_appears_after_clv_training_and_is_per_store(client, login_as, db, seed_lines, make_store, monkeypatch):
    north, south = _two_stores_with_clv(seed_lines, make_store)
    scoring.rescore_all()
    login_as("manager", store=north)
    before = client.get("/").get_data(as_text=True)
    assert "No lifetime-value model yet" in before and 'id="outlook"' not in before

    training.train_clv(rescore=False)
    # A page view never refits: fitting would fail loudly here.
    from preprocessing import clv
    from preprocessing.clv import outlook as clv_outlook

    def refuse(*_a, **_k):
        raise AssertionError("the dashboard refitted the CLV model")

    monkeypatch.setattr(clv, "fit_bgnbd", refuse)
    monkeypatch.setattr(clv_outlook, "fit_bgnbd", refuse)  # what clv.backtest calls
    monkeypatch.setattr(clv, "backtest", refuse)
    page = client.get("/").get_data(as_text=True)
    assert 'id="outlook"' in page and "parameter uncertainty only" in page
    assert 'data-chart="outlook-chart"' in page and 'data-chart="backtest-chart"' in page
    assert "Mean absolute percentage error of the monthly repeat purchases" in page
    as_of = dashboard_service.reference_time().strftime("%Y-%m-%d")
    assert f"from the 250 customers who had bought in this store by {as_of}" in page

    stored = outlook_service.for_scope(north.id)["outlook"]
    scopes = stored["scopes"]
    assert set(scopes) == {"all", str(north.id), str(south.id)}
    assert scopes["all"]["customers"] == 370 and scopes[str(south.id)]["customers"] == 120
    all_rows, north_rows, south_rows = (scopes[k]["forecast"] for k in ("all", str(north.id), str(south.id)))
    first = (pd.Timestamp(as_of) + pd.Timedelta(days=1)).strftime("%Y-%m")
    assert len(all_rows) == 12 and all_rows[0]["month"] == first
    for a, n, s in zip(all_rows, north_rows, south_rows):  # same parameters: store forecasts add up
        assert a["expected_purchases"] == pytest.approx(n["expected_purchases"] + s["expected_purchases"], abs=0.2)
        assert a["lower"] <= a["expected_purchases"] <= a["upper"]
    backtest = scopes["all"]["backtest"]
    assert backtest["cutoff"] == (pd.Timestamp(as_of) - pd.DateOffset(months=6)).strftime("%Y-%m-%d")
    assert len(backtest["months"]) in (6, 7)  # six months after the cutoff (a partial one at each end)
    assert 0 <= backtest["mape_purchases"] < 1
    assert sum(m["actual_purchases"] for m in backtest["months"]) > 0


def test_clv_model_without_outlook_asks_for_a_retrain(client, login_as, db, seed_lines, monkeypatch):
    seed_lines(synthetic_lines())
    monkeypatch.setattr(outlook_service, "compute_outlook", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    training.train_clv(rescore=False)
    from portal.models import ModelRecord

    record = db.session.scalar(select(ModelRecord).where(ModelRecord.name == "clv"))
    record.manifest = {k: v for k, v in record.manifest.items() if k != "outlook"}
    db.session.commit()
    login_as("admin")
    page = client.get("/").get_data(as_text=True)
    assert "trained before the outlook was part of training" in page


def test_repeat_history_counts_repeat_purchase_days():
    frame = pd.DataFrame(
        {
            "customer_id": ["A", "A", "A", "A", "B", None],
            "purchase_date": pd.to_datetime(
                ["2026-01-03", "2026-01-03", "2026-02-01", "2026-02-09", "2026-02-10", "2026-02-11"]
            ),
            "total_amount": [5.0, 5.0, 7.0, -3.0, 9.0, 4.0],
        }
    )
    history = outlook_service.repeat_history(frame, as_of=datetime(2026, 2, 28), months=2)
    # A's first day (Jan 3, two lines) is not a repeat; Feb 1 is; the Feb 9 return and B's first day are not.
    assert history == [
        {"month": "2026-01", "purchases": 0, "revenue": 0.0},
        {"month": "2026-02", "purchases": 1, "revenue": 7.0},
    ]
