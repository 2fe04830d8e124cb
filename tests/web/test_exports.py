"""Exports: exact headers and rows, column choice, formula neutralisation, opted-out toggle, scoping,
audit rows, XLSX limits, the other lists, ``flask export``, and a 1M-row CSV in bounded memory."""

import csv
import io
import os
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from sqlalchemy import insert, select

from portal.models import (
    AuditEntry,
    BundleRule,
    Campaign,
    Customer,
    ModelRecord,
    OutboxMessage,
    Product,
    Setting,
    StockLevel,
)
from portal.services.lists import cells, exports
from tests.conftest import login

HEADERS = (
    "customer_id,name,phone,email,store,sms_consent,tier,reward,monetary,frequency,recency,total_quantity,"
    "num_unique_products,avg_price_per_unit,store_visit_frequency,active_days,avg_purchase_gap_days,"
    "churn_probability,churn_band,p_alive,expected_purchases_90d,clv_12m,scored_at,lifecycle,p_return_12m"
)


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200, response.get_data(as_text=True)[:400]
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


@pytest.fixture()
def scored(make_store, make_customer):
    store = make_store("Alpha")
    scored_at = datetime(2026, 1, 20, 9, 30, tzinfo=timezone.utc)
    ann = make_customer(
        store=store,
        external_id="C1",
        name="Ann",
        phone="+12025550101",
        email="ann@example.com",
        sms_consent="opted_in",
        tier="Gold",
        monetary=Decimal("1234.50"),
        frequency=12,
        recency=30,
        total_quantity=40.0,
        num_unique_products=9,
        avg_price_per_unit=30.8625,
        store_visit_frequency=11,
        active_days=300,
        avg_purchase_gap_days=27.25,
        churn_probability=0.8125,
        churn_band="High",
        p_alive=0.4,
        p_return_12m=0.35,
        expected_purchases_90d=1.5,
        clv_12m=Decimal("310.00"),
        scored_at=scored_at,
    )
    bob = make_customer(
        store=store,
        external_id="C2",
        name="=HYPERLINK(\"http://x\")",
        phone="+12025550102",
        email="@bob",
        sms_consent="opted_out",
    )
    new = make_customer(store=store, external_id="C3", name="-Minus", phone=None, sms_consent="unknown")
    return {"store": store, "ann": ann, "bob": bob, "new": new}


def test_customer_csv_has_exact_headers_and_rows(client, login_as, scored):
    login_as("marketer")
    rows = _csv(client.get("/customers?format=csv"))
    assert ",".join(rows[0]) == HEADERS
    assert rows[1] == [
        "C1",
        "Ann",
        "+12025550101",
        "ann@example.com",
        "Alpha",
        "opted_in",
        "Gold",
        "20% discount + free shipping",
        "1234.50",
        "12",
        "30",
        "40",
        "9",
        "30.8625",
        "11",
        "300",
        "27.25",
        "0.8125",
        "High",
        "0.4",
        "1.5",
        "310.00",
        "2026-01-20T09:30:00+00:00",
        "",  # lifecycle: set by a scoring run, which this hand-made row never had
        "0.35",
    ]
    # Not scored yet: model columns are empty; a text cell starting with '-' is neutralised.
    assert rows[2] == ["C3", "'-Minus", "", "", "Alpha", "unknown", "", ""] + [""] * 17
    assert len(rows) == 3  # the opted-out customer is left out by default


def test_opted_out_toggle_and_formula_neutralisation(client, login_as, scored):
    login_as("marketer")
    rows = _csv(client.get("/customers?format=csv&include_opted_out=1&columns=customer_id,name,phone,email"))
    assert rows[0] == ["customer_id", "name", "phone", "email"]
    assert ["C2", "'=HYPERLINK(\"http://x\")", "+12025550102", "'@bob"] in rows
    # An E.164 phone starting with '+' stays a phone number (no quote).
    assert ["C1", "Ann", "+12025550101", "ann@example.com"] in rows


def test_opted_out_filter_implies_the_toggle(client, login_as, scored):
    login_as("marketer")
    rows = _csv(client.get("/customers?format=csv&consent=opted_out&columns=customer_id"))
    assert rows == [["customer_id"], ["C2"]]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("=1+2", "'=1+2"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-12.5", "-12.5"),
        ("+3", "+3"),
        ("-1e5", "-1e5"),
        ("+12025550123", "+12025550123"),
        ("+1 202 555 0123", "'+1 202 555 0123"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_neutralise_follows_owasp_with_number_and_phone_exceptions(text, expected):
    assert cells.neutralise(text) == expected


def test_columns_are_chosen_in_order_and_validated(client, login_as, scored):
    login_as("marketer")
    rows = _csv(client.get("/customers?format=csv&columns=tier,customer_id"))
    assert rows == [["tier", "customer_id"], ["Gold", "C1"], ["", "C3"]]
    # The export form sends one ``columns`` per checkbox.
    rows = _csv(client.get("/customers?format=csv&columns=customer_id&columns=tier"))
    assert rows[0] == ["customer_id", "tier"]
    bad = client.get("/customers?format=csv&columns=customer_id,password")
    assert bad.status_code == 400 and "Unknown column password" in bad.get_data(as_text=True)


def test_export_uses_the_page_filters_and_sort(client, login_as, scored, make_customer):
    make_customer(store=scored["store"], external_id="C9", tier="Gold", monetary=Decimal("9999"))
    login_as("marketer")
    rows = _csv(client.get("/customers?tier=Gold&sort=-monetary&format=csv&columns=customer_id,monetary"))
    assert rows == [["customer_id", "monetary"], ["C9", "9999.00"], ["C1", "1234.50"]]


def test_erased_customers_are_never_exported(client, login_as, scored, db):
    scored["ann"].erased_at = datetime.now(timezone.utc)
    db.session.commit()
    login_as("admin")
    rows = _csv(client.get("/customers?format=csv&include_opted_out=1&columns=customer_id"))
    assert rows == [["customer_id"], ["C2"], ["C3"]]


def test_manager_export_is_scoped_to_their_store(client, make_store, make_user, make_customer, scored):
    other = make_store("Beta")
    make_customer(store=other, external_id="B1", sms_consent="opted_in")
    login(client, make_user("manager", store=other).email)
    rows = _csv(client.get("/customers?format=csv&include_opted_out=1&columns=customer_id"))
    assert rows == [["customer_id"], ["B1"]]
    rows = _csv(client.get("/exports/customers?format=csv&store=Alpha&columns=customer_id"))
    assert rows == [["customer_id"]]


def test_csv_export_is_audited_with_row_count(client, login_as, scored, db):
    user = login_as("marketer")
    _csv(client.get("/customers?tier=Gold&format=csv&columns=customer_id"))
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "export"))
    assert entry.user_email == user.email and entry.target == "customers"
    assert entry.detail == {
        "list": "customers",
        "filter": "tier=Gold",
        "format": "csv",
        "rows": 1,
        "columns": ["customer_id"],
        "include_opted_out": False,
        "source": "web",
    }
    history = client.get("/exports").get_data(as_text=True)
    assert "tier=Gold" in history and "CSV" in history


def test_export_history_shows_only_own_exports(client, login_as, db):
    db.session.add(
        AuditEntry(
            action="export",
            target="customers",
            user_email="someone@example.com",
            detail={"list": "customers", "filter": "band=Secret", "format": "csv", "rows": 3},
        )
    )
    db.session.commit()
    login_as("marketer")
    html = client.get("/exports").get_data(as_text=True)
    assert "band=Secret" not in html and "No exports yet" in html


def test_stream_stopped_early_is_audited_as_stopped(app, db, scored):
    export = exports.prepare("customers", {"include_opted_out": "1"}, None)
    seen = []
    stream = exports.csv_chunks(export, lambda rows, done: seen.append((rows, done)), chunk_rows=1)
    next(stream), next(stream)  # header, first row
    stream.close()  # the client went away
    assert seen == [(1, False)]


def test_xlsx_has_typed_cells_and_neutralised_text(client, login_as, scored, db):
    login_as("marketer")
    response = client.get("/customers?format=xlsx&include_opted_out=1")
    assert response.status_code == 200 and response.mimetype.endswith("spreadsheetml.sheet")
    sheet = load_workbook(io.BytesIO(response.data), read_only=True).active
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert ",".join(rows[0]) == HEADERS
    ann = rows[1]
    assert ann[:3] == ["C1", "Ann", "+12025550101"] and ann[8] == 1234.5 and ann[9] == 12
    assert ann[22] == datetime(2026, 1, 20, 9, 30)
    assert rows[2][1] == "'=HYPERLINK(\"http://x\")"  # stored as text, never as a formula
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "export"))
    assert entry.detail["format"] == "xlsx" and entry.detail["rows"] == 3


def test_xlsx_refused_over_the_row_limit_points_to_csv(client, login_as, scored, db, monkeypatch):
    monkeypatch.setattr(exports, "XLSX_MAX_ROWS", 1)
    login_as("marketer")
    response = client.get("/customers?tier=none&format=xlsx&include_opted_out=1")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "more than an Excel sheet holds" in html
    assert "format=csv" in html and "tier=none" in html and "2 rows" in html
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "export")) is None


def test_unknown_format_and_unknown_list(client, login_as):
    login_as("marketer")
    assert client.get("/customers?format=pdf").status_code == 400
    assert client.get("/exports/secrets?format=csv").status_code == 404


def test_export_panel_on_the_list_page(client, login_as, scored):
    login_as("marketer")
    html = client.get("/customers?tier=Gold").get_data(as_text=True)
    assert 'name="format" value="csv"' in html and 'name="format" value="xlsx"' in html
    assert 'name="include_opted_out"' in html and 'value="churn_probability"' in html
    assert '<input type="hidden" name="tier" value="Gold">' in html
    assert "js/segments.js" in html


# --- the other lists ---------------------------------------------------------------------------


def test_at_risk_sorted_by_probability_times_value(client, login_as, make_customer):
    make_customer(
        external_id="R1", churn_band="High", churn_probability=0.9, clv_12m=Decimal("100"), sms_consent="opted_in"
    )  # 90
    make_customer(
        external_id="R2", churn_band="Medium", churn_probability=0.5, clv_12m=None, spend_12m=Decimal("400")
    )  # 200: falls back to the 12-month spend
    make_customer(external_id="R3", churn_band="Low", churn_probability=0.2, clv_12m=Decimal("1000"))  # 200, later id
    make_customer(external_id="R4", churn_band=None, monetary=Decimal("1"))  # not scored: not at risk
    login_as("marketer")
    rows = _csv(client.get("/exports/at-risk?format=csv&columns=customer_id,churn_band"))
    assert rows == [["customer_id", "churn_band"], ["R3", "Low"], ["R2", "Medium"], ["R1", "High"]]
    assert _csv(client.get("/exports/at-risk?format=csv&columns=customer_id&band=High")) == [["customer_id"], ["R1"]]


def test_bundles_export_reads_the_active_model(client, login_as, db):
    old = ModelRecord(name="bundles", files={}, manifest={}, active=False)
    new = ModelRecord(name="bundles", files={}, manifest={}, active=True)
    db.session.add_all([old, new])
    db.session.flush()
    db.session.add_all(
        [
            BundleRule(
                model_id=old.id, antecedents=["X"], consequents=["Y"], support=0.5, confidence=0.5, lift=9.0, baskets=1
            ),
            BundleRule(
                model_id=new.id,
                antecedents=["P1"],
                consequents=["P2"],
                antecedent_names="Red mug",
                consequent_names="=Tea",
                support=0.125,
                confidence=0.4,
                lift=1.75,
                baskets=20,
            ),
            BundleRule(
                model_id=new.id,
                antecedents=["P3", "P4"],
                consequents=["P5"],
                support=0.1,
                confidence=0.3,
                lift=2.5,
                baskets=12,
            ),
        ]
    )
    db.session.commit()
    login_as("marketer")
    rows = _csv(client.get("/exports/bundles?format=csv"))
    assert rows == [
        ["antecedents", "consequents", "support", "confidence", "lift", "baskets"],
        ["P3, P4", "P5", "0.1", "0.3", "2.5", "12"],
        ["Red mug", "'=Tea", "0.125", "0.4", "1.75", "20"],
    ]


def test_dead_stock_uses_the_ratio_setting_and_store_scope(client, make_store, make_user, db):
    a, b = make_store("Alpha"), make_store("Beta")
    mug = Product(external_id="P1", name="Red mug", price=Decimal("4.50"))
    tea = Product(external_id="P2", name="Tea", price=Decimal("2.00"))
    db.session.add_all([mug, tea])
    db.session.flush()
    db.session.add_all(
        [
            StockLevel(product_id=mug.id, store_id=a.id, initial_stock=Decimal("100"), total_sold=Decimal("30")),
            StockLevel(product_id=tea.id, store_id=a.id, initial_stock=Decimal("10"), total_sold=Decimal("7")),
            StockLevel(product_id=tea.id, store_id=b.id, initial_stock=Decimal("10"), total_sold=Decimal("1")),
        ]
    )
    db.session.commit()
    login(client, make_user("manager", store=a).email)
    rows = _csv(client.get("/exports/dead-stock?format=csv"))
    assert rows == [
        ["product_id", "product_name", "initial_stock", "total_sold", "sold_ratio", "stock_value"],
        ["P1", "Red mug", "100", "30", "0.3", "315.00"],
    ]
    db.session.add(Setting(key="bundles.dead_stock_ratio", value="0.8"))
    db.session.commit()
    rows = _csv(client.get("/exports/dead-stock?format=csv&columns=product_id,sold_ratio"))
    assert rows == [["product_id", "sold_ratio"], ["P1", "0.3"], ["P2", "0.7"]]


def test_campaign_recipients_export(client, login_as, make_store, make_customer, db):
    store = make_store("Alpha")
    ann = make_customer(store=store, external_id="C1")
    gone = make_customer(store=store, external_id="C2", erased_at=datetime.now(timezone.utc))
    campaign = Campaign(name="Win back", template="Hi", store_id=store.id)
    db.session.add(campaign)
    db.session.flush()
    sent = datetime(2026, 2, 1, 15, 0, tzinfo=timezone.utc)
    db.session.add_all(
        [
            OutboxMessage(
                campaign_id=campaign.id,
                customer_id=ann.id,
                group="message",
                phone="+12025550101",
                status="delivered",
                message_sid="SM1",
                sent_at=sent,
                coupon_code="WB-1",
            ),
            OutboxMessage(campaign_id=campaign.id, customer_id=gone.id, group="control", phone=None, status="control"),
        ]
    )
    db.session.commit()
    login_as("marketer")
    rows = _csv(client.get(f"/exports/campaign-recipients?format=csv&campaign={campaign.id}"))
    assert rows == [
        [
            "campaign_id",
            "customer_id",
            "phone",
            "group",
            "status",
            "error_code",
            "message_sid",
            "sent_at",
            "coupon_code",
            "redeemed_at",
        ],
        [
            str(campaign.id),
            "C1",
            "+12025550101",
            "message",
            "delivered",
            "",
            "SM1",
            "2026-02-01T15:00:00+00:00",
            "WB-1",
            "",
        ],
    ]
    missing = client.get("/exports/campaign-recipients?format=csv")
    assert missing.status_code == 400 and "Choose a campaign" in missing.get_data(as_text=True)


# --- flask export ------------------------------------------------------------------------------


def test_cli_export_writes_the_same_csv_and_is_audited(runner, client, login_as, scored, tmp_path, db):
    out = tmp_path / "gold.csv"
    result = runner.invoke(
        args=["export", "customers", "--filter", "tier=Gold&sort=-monetary", "--format", "csv", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "exported 1 rows of customers" in result.output
    login_as("marketer")
    page = client.get("/customers?tier=Gold&sort=-monetary&format=csv").data
    assert out.read_bytes() == page
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "export").order_by(AuditEntry.id))
    assert entry.user_email == "cli" and entry.detail["source"] == "cli" and entry.detail["rows"] == 1


def test_cli_export_columns_opted_out_and_xlsx(runner, scored, tmp_path):
    out = tmp_path / "all.xlsx"
    result = runner.invoke(
        args=[
            "export",
            "customers",
            "--format",
            "xlsx",
            "-o",
            str(out),
            "--columns",
            "customer_id,sms_consent",
            "--include-opted-out",
        ]
    )
    assert result.exit_code == 0, result.output
    rows = [list(r) for r in load_workbook(out, read_only=True).active.iter_rows(values_only=True)]
    assert rows == [["customer_id", "sms_consent"], ["C1", "opted_in"], ["C2", "opted_out"], ["C3", "unknown"]]


def test_cli_export_refusals_and_usage_errors(runner, scored, tmp_path, monkeypatch):
    out = tmp_path / "x.csv"
    result = runner.invoke(args=["export", "customers", "-o", str(out), "--columns", "nope"])
    assert result.exit_code == 1 and "Unknown column nope" in result.output and not out.exists()
    monkeypatch.setattr(exports, "XLSX_MAX_ROWS", 1)
    result = runner.invoke(args=["export", "customers", "--format", "xlsx", "-o", str(tmp_path / "x.xlsx")])
    assert result.exit_code == 1 and "CSV" in result.output and not (tmp_path / "x.xlsx").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".export-")]
    assert runner.invoke(args=["export", "secrets", "-o", str(out)]).exit_code == 2
    assert runner.invoke(args=["export", "customers", "--format", "pdf", "-o", str(out)]).exit_code == 2
    result = runner.invoke(args=["export", "campaign-recipients", "-o", str(out)])
    assert result.exit_code == 1 and "Choose a campaign" in result.output


# --- 1M rows -----------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
def test_million_row_csv_streams_in_bounded_memory(client, login_as, make_store, db):
    """1,000,000 customers export as CSV while the process grows by far less than the file's size.

    The file is ~140 MB; a materialised export (a list of rows or the whole text) would add at
    least that. The bound, 80 MB, leaves room for the batch of 2,000 rows, SQLite's page cache,
    the driver's buffers and allocator slack, and is still well under the file size.
    """
    n = 1_000_000
    store = make_store("Big")
    scored_at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    batch = []
    for i in range(n):
        batch.append(
            {
                "external_id": f"M{i:07d}",
                "name": f"Customer {i}",
                "phone": f"+1202{i:07d}",
                "email": f"c{i}@example.com",
                "store_id": store.id,
                "sms_consent": "opted_in",
                "tier": "Gold",
                "monetary": Decimal(i % 5000),
                "frequency": i % 40,
                "recency": i % 365,
                "churn_probability": (i % 100) / 100,
                "churn_band": "High",
                "scored_at": scored_at,
            }
        )
        if len(batch) == 20_000:
            db.session.connection().execute(insert(Customer.__table__), batch)
            batch = []
    db.session.commit()
    db.session.expunge_all()
    login_as("marketer")
    response = client.get("/customers?format=csv", buffered=False)
    baseline = peak = _rss_mb()
    lines = size = 0
    for chunk in response.response:
        lines += chunk.count(b"\n") if isinstance(chunk, bytes) else chunk.count("\n")
        size += len(chunk)
        if lines % 50_000 < 1000:
            peak = max(peak, _rss_mb())
    response.close()
    peak = max(peak, _rss_mb())
    assert lines == n + 1
    assert size > 100 * 2**20
    assert peak - baseline < 80, (baseline, peak)
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "export"))
    assert entry.detail["rows"] == n
