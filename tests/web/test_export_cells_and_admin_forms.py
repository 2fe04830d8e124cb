"""Issue #21 items 15, 16, 18 and 6: typed XLSX cells (read back with openpyxl), CSV phones, the saved
segment's size note, the settings page's percentages, and no wtforms DeprecationWarning on the pages."""

from __future__ import annotations

import html
import io
import re
import warnings
from datetime import datetime
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from portal.models import AuditEntry, Customer, Setting
from portal.services import settings as settings_service
from portal.services.lists import cells, exports, segments
from tests.conftest import login, post_form
from tests.web.test_exports import HEADERS, scored  # noqa: F401  (the fixture)


def _sheet(response):
    assert response.status_code == 200, response.get_data(as_text=True)[:400]
    return load_workbook(io.BytesIO(response.data)).active  # full mode: styles and sheet settings readable


def test_xlsx_cells_are_typed_and_formatted_with_a_frozen_filtered_header(client, login_as, scored):  # noqa: F811
    login_as("marketer")
    sheet = _sheet(client.get("/customers?format=xlsx&include_opted_out=1"))
    headers = [c.value for c in sheet[1]]
    assert ",".join(headers) == HEADERS  # the stable snake_case names
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == f"A1:{sheet.cell(1, len(headers)).column_letter}4"
    col = {h: i + 1 for i, h in enumerate(headers)}
    ann = {h: sheet.cell(2, col[h]) for h in headers}
    assert ann["monetary"].value == Decimal("1234.5") or ann["monetary"].value == 1234.5
    assert ann["monetary"].data_type == "n" and ann["monetary"].number_format.startswith('"$"#,##0.00')
    assert ann["clv_12m"].value == 310 and '"$"' in ann["clv_12m"].number_format
    assert ann["churn_probability"].value == 0.8125 and ann["churn_probability"].number_format == "0.0%"
    assert ann["p_alive"].number_format == "0.0%"
    assert ann["scored_at"].value == datetime(2026, 1, 20, 9, 30) and ann["scored_at"].is_date
    assert ann["scored_at"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert ann["frequency"].value == 12 and ann["frequency"].number_format == "#,##0"
    assert ann["phone"].value == "+12025550101" and ann["phone"].data_type == "s"
    assert ann["customer_id"].data_type == "s" and ann["customer_id"].number_format == "@"
    formula_like = sheet.cell(3, col["name"])
    assert formula_like.value == "'=HYPERLINK(\"http://x\")" and formula_like.data_type == "s"
    widths = {h: sheet.column_dimensions[sheet.cell(1, col[h]).column_letter].width for h in headers}
    assert all(8 <= w <= 50 for w in widths.values())
    assert widths["email"] >= len("ann@example.com") and widths["avg_purchase_gap_days"] >= len("avg_purchase_gap_days")
    assert widths["scored_at"] >= 19


def test_money_format_follows_the_viewers_store_currency(client, make_store, make_user, make_customer):
    euro = make_store("Paris", timezone="Europe/Paris", currency="EUR")
    make_customer(store=euro, external_id="E1", monetary=Decimal("15.49"), sms_consent="opted_in")
    login(client, make_user("manager", store=euro).email)
    sheet = _sheet(client.get("/customers?format=xlsx&columns=customer_id,monetary"))
    assert sheet["B2"].value == 15.49 and sheet["B2"].number_format.startswith('"€"#,##0.00')


def test_mixed_currencies_leave_money_as_plain_two_decimals(db, make_store, make_user):
    make_store("Paris", currency="EUR")
    make_store("Boston", currency="USD")
    admin = make_user("admin")
    assert exports.currency_symbol(admin) is None
    assert cells.column_format("monetary", None) == "#,##0.00"


def test_xlsx_streams_in_write_only_mode_past_the_width_sample(db, make_store, monkeypatch):
    store = make_store("Bulk")
    db.session.execute(
        Customer.__table__.insert(),
        [{"external_id": f"B{i:05d}", "name": "x" * (5 if i < 10 else 45), "store_id": store.id} for i in range(300)],
    )
    db.session.commit()
    from openpyxl import Workbook

    modes = []
    real = Workbook

    def spy(*args, **kwargs):
        modes.append(kwargs.get("write_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr("openpyxl.Workbook", spy)
    out = io.BytesIO()
    rows = exports.write_xlsx(exports.prepare("customers", {"columns": "customer_id,name"}, None), out, sample_rows=10)
    assert rows == 300 and modes == [True]
    sheet = load_workbook(io.BytesIO(out.getvalue())).active
    assert sheet.max_row == 301 and sheet.auto_filter.ref == "A1:B301"
    assert sheet.column_dimensions["B"].width == 8  # sized from the first 10 rows only (short names)


def test_csv_keeps_e164_phones_and_formula_escaping_and_the_panel_says_how_to_keep_them_text(
    client,
    login_as,
    scored,  # noqa: F811
):
    login_as("marketer")
    body = client.get("/customers?format=csv&include_opted_out=1&columns=customer_id,name,phone").get_data(as_text=True)
    assert "C1,Ann,+12025550101" in body and "'=HYPERLINK" in body
    page = html.unescape(client.get("/customers").get_data(as_text=True))
    assert "Choose XLSX: phone numbers and ids stay text" in page and "the number 12025550123" in page


def test_saved_segment_size_says_what_it_counts(client, login_as, scored, db):  # noqa: F811
    user = login_as("marketer")
    segment = segments.create("Everyone", "customers", "", user)
    answer = client.get(f"/segments/{segment.id}/count").get_json()
    listed = db.session.scalar(select(func.count()).select_from(Customer))
    opted_out = db.session.scalar(select(func.count()).where(Customer.sms_consent == "opted_out"))
    assert (answer["count"], answer["listed"], answer["opted_out"]) == (listed - opted_out, listed, opted_out)
    assert answer["note"].startswith("2 can be exported: 1 opted out is left out of the 3 on the list (counts as of ")
    assert answer["as_of"] is not None  # counted from the stored summary
    with_them = client.get("/segments/count?list=customers&include_opted_out=1").get_json()
    assert with_them["count"] == 3 and with_them["opted_out"] == 0 and with_them["note"] == ""
    page = client.get("/segments").get_data(as_text=True)
    assert 'class="small text-body-secondary count-note"' in page and "(in exports)" in page


def test_settings_take_and_show_shares_as_percentages(client, login_as, db):
    login_as("admin")
    page = client.get("/settings").get_data(as_text=True)
    assert 'name="sms.control_share" value="10"' in page and 'name="tiers.share" value="25"' in page
    response = post_form(client, "/settings", {"sms.control_share": "15", "tiers.share": "30 %", "churn.high": "72.5"})
    assert response.status_code == 302
    assert settings_service.get("sms.control_share") == 0.15 and settings_service.get("tiers.share") == 0.3
    assert settings_service.get("churn.high") == 0.725
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.target == "sms.control_share"))
    assert entry.detail == {"before": 0.1, "after": 0.15}
    page = client.get("/settings").get_data(as_text=True)
    assert 'name="sms.control_share" value="15"' in page and 'name="churn.high" value="72.5"' in page


@pytest.mark.parametrize(
    "typed, message", [("abc", "must be a percentage"), ("95", "must be at most 90 %"), ("-1", "must be at least 0 %")]
)
def test_a_bad_percentage_is_explained_and_nothing_is_saved(client, login_as, db, typed, message):
    login_as("admin")
    response = post_form(client, "/settings", {"sms.control_share": typed, "tier.k": "5"})
    text = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 400 and message in text
    assert f'name="sms.control_share" value="{typed}"' in text  # what the admin typed stays in the field
    assert db.session.scalar(select(Setting)) is None


def test_pages_with_select_fields_raise_no_deprecation_warning(client, login_as, db, tmp_path):
    login_as("admin")
    paths = ["/imports", "/users", "/users/1", "/segments"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for path in paths:
            assert client.get(path).status_code == 200, path
        data = {
            "kind": "transactions",
            "store_id": "0",
            "file": (
                io.BytesIO(b"customer_id,transaction_id,purchase_date,product_id\nC1,T1,2025-01-01,P1\n"),
                "t.csv",
            ),
        }
        response = post_form(client, "/imports", data, content_type="multipart/form-data")
        assert response.status_code == 302
        mapping = client.get(response.headers["Location"])
        assert mapping.status_code == 200 and re.search(r'<select[^>]+name="map_customer_id"', mapping.get_data(True))
