"""Input that used to crash a page or stall the job slot: hand-edited paging cursors, broken workbooks,
ragged CSV rows and decompression bombs. Each is a clear 400 or a refusal, and nothing is left behind."""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from portal.models import Campaign, Customer, ImportRun, PurchaseLine
from tests.conftest import csrf_token

BAD_CURSORS = {
    "not json": "garbage",
    "garbage date": '[{"dt":"garbage"},1]',
    "date of the wrong type": '[{"dt":5},1]',
    "garbage decimal": '[{"dec":"abc"},1]',
    "23-digit id": "[null,12345678901234567890123]",
    "negative huge id": "[null,-12345678901234567890123]",
    "huge sort value": "[123456789012345678901234567890,1]",
    "infinite sort value": "[1e999,1]",
    "text id": '[null,"x"]',
    "boolean id": "[null,true]",
    "nested list": "[[1],1]",
    "three values": "[1,2,3]",
    "one value": "[1]",
    "an object": '{"a":1}',
    "deep nesting": "[" * 5000 + "]" * 5000,
}

LIST_PAGES = [
    "/customers",
    "/customers?sort=-monetary",
    "/customers?sort=last_purchase_at",
    "/customers?sort=name",
    "/tiers",
    "/bundles",
    "/bundles?sort=-lift",
    "/campaigns",
    "/campaigns/{campaign}",
    "/imports",
    "/audit",
    "/exports",
]  # the customer page has no cursor: its timeline grows with ?timeline=N (tests/web/test_customer_page.py)


@pytest.fixture()
def pages(db, login_as, make_store, make_customer):
    store = make_store("Downtown")
    customer = make_customer(store=store)
    campaign = Campaign(name="Spring", store_id=store.id, template="Hi", status="draft")
    db.session.add(campaign)
    db.session.commit()
    login_as("admin")
    return {"customer": customer.id, "campaign": campaign.id}


@pytest.mark.parametrize("cursor", BAD_CURSORS.values(), ids=BAD_CURSORS.keys())
@pytest.mark.parametrize("page", LIST_PAGES)
def test_a_malformed_paging_cursor_is_a_400_on_every_list_page(client, pages, page, cursor):
    url = page.format(**pages)
    response = client.get(url + ("&" if "?" in url else "?") + "after=" + quote(cursor))
    assert response.status_code == 400, (url, cursor, response.status_code)


def test_a_malformed_cursor_on_the_at_risk_list_is_a_400(client, db, login_as, seed_lines):
    from portal.services.scores import scoring, training
    from tests.conftest import synthetic_lines

    seed_lines(synthetic_lines(n_customers=120))
    training.train_churn(rescore=False)
    scoring.rescore_all()
    login_as("admin")
    assert client.get("/churn").status_code == 200
    for name, cursor in BAD_CURSORS.items():
        assert client.get("/churn?after=" + quote(cursor)).status_code == 400, name


def test_a_real_cursor_still_pages(client, db, pages, make_customer):
    for _ in range(60):
        make_customer()
    first = client.get("/customers?sort=-monetary").get_data(as_text=True)
    assert "more on the next page" in first
    import html
    import re

    next_url = html.unescape(re.search(r'href="(/customers\?[^"]*after=[^"]+)"', first).group(1))
    assert client.get(next_url).status_code == 200


# --- broken workbooks at upload: a refusal on the page, no run, no file left in UPLOAD_DIR ---------------


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _workbook_parts() -> dict[str, bytes]:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["customer_id", "purchase_date", "quantity", "total_amount"])
    buffer = io.BytesIO()
    book.save(buffer)
    archive = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    return {name: archive.read(name) for name in archive.namelist()}


BROKEN_WORKBOOKS = {
    "random bytes": (os.urandom(4096), "binary data"),
    "zip of random bytes": (b"PK\x03\x04" + os.urandom(4096), "damaged"),
    "zip with no workbook": (_zip({"notes.txt": b"hello"}), "not an Excel"),
    "workbook xml broken": (_zip({**_workbook_parts(), "xl/workbook.xml": b"<<<not xml"}), "damaged"),
    "sheet xml broken": (_zip({**_workbook_parts(), "xl/worksheets/sheet1.xml": b"<<<not xml"}), "damaged"),
}


@pytest.mark.parametrize("payload, message", BROKEN_WORKBOOKS.values(), ids=BROKEN_WORKBOOKS.keys())
def test_a_broken_workbook_is_refused_at_upload_and_nothing_is_kept(
    app, client, db, login_as, make_store, payload, message
):
    from tests.web.test_imports import upload

    make_store("Downtown")
    login_as("admin")
    folder = app.config["UPLOAD_DIR"]
    before = set(os.listdir(folder)) if os.path.isdir(folder) else set()
    response = upload(client, "transactions", "sales.xlsx", payload)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert set(os.listdir(folder)) - before == set()
    assert db.session.scalar(select(func.count()).select_from(ImportRun)) == 0


# --- ragged rows and decompression bombs through the importer -----------------------------------------

HEADER = "customer_id,transaction_id,purchase_date,product_id,quantity,price_per_unit"


def _lines(db) -> int:
    return db.session.scalar(select(func.count()).select_from(PurchaseLine))


@pytest.mark.parametrize("sep", [",", "\t"])
@pytest.mark.parametrize("where", ["first", "later"])
def test_a_row_with_more_fields_than_the_header_is_refused_not_shifted(runner, db, tmp_path, make_store, sep, where):
    make_store("Downtown")
    good = [sep.join([f"C{i}", f"T{i}", "2025-03-01", "P1", "1", "2.5"]) for i in range(1, 6)]
    ragged = sep.join(["RR1", "Smith", " John", "T9", "2025-03-01", "P1", "1", "2.5"])
    rows = [ragged, *good] if where == "first" else [*good, ragged]
    path = tmp_path / ("sales.tsv" if sep == "\t" else "sales.csv")
    path.write_text(HEADER.replace(",", sep) + "\n" + "\n".join(rows) + "\n")
    result = runner.invoke(args=["import", "transactions", str(path)])
    row = 2 if where == "first" else 7
    assert result.exit_code == 1, result.output
    assert f"Row {row} has 8 values but the header has 6 columns" in result.stderr
    assert _lines(db) == 0 and db.session.scalar(select(func.count()).select_from(Customer)) == 0


def _bomb(rows: int = 300_000) -> bytes:
    return gzip.compress((HEADER + "\n" + "C1,T1,2025-03-01,P1,1,2.5\n" * rows).encode())


def test_a_gzip_bomb_is_refused_at_upload_with_nothing_kept(app, client, db, login_as, make_store):
    from tests.web.test_imports import upload

    make_store("Downtown")
    login_as("admin")
    app.config["IMPORT_MAX_EXPANDED_MB"] = 1  # the bomb expands to ~8 MB from ~30 KB
    folder = app.config["UPLOAD_DIR"]
    before = set(os.listdir(folder)) if os.path.isdir(folder) else set()
    try:
        response = upload(client, "transactions", "sales.csv.gz", _bomb())
    finally:
        app.config["IMPORT_MAX_EXPANDED_MB"] = 1024
    assert response.status_code == 400
    assert "expands to more than 1 MB" in response.get_data(as_text=True)
    assert set(os.listdir(folder)) - before == set()
    assert db.session.scalar(select(func.count()).select_from(ImportRun)) == 0


def test_the_caps_also_stop_an_import_already_queued(app, client, db, login_as, make_store):
    """A cap lowered (or a file swapped) after the upload: the job stops early, writes nothing, says why."""
    from tests.web.test_imports import run_id_from, upload

    make_store("Downtown")
    login_as("admin")
    run_id = run_id_from(upload(client, "transactions", "sales.csv.gz", _bomb(50_000)))
    for setting, value, message in (
        ("IMPORT_MAX_EXPANDED_MB", 1, "expands to more than 1 MB"),
        ("IMPORT_MAX_ROWS", 1000, "more than 1,000 rows"),
    ):
        token = csrf_token(client, f"/imports/{run_id}/mapping")  # the page itself re-reads the file
        mapping = {f"map_{field}": header for field, header in db.session.get(ImportRun, run_id).mapping.items()}
        app.config[setting] = value
        try:
            client.post(f"/imports/{run_id}/mapping", data={**mapping, "csrf_token": token})
        finally:
            app.config[setting] = {"IMPORT_MAX_EXPANDED_MB": 1024, "IMPORT_MAX_ROWS": 5_000_000}[setting]
        db.session.expire_all()
        run = db.session.get(ImportRun, run_id)
        assert run.status == "refused" and message in run.message
        assert _lines(db) == 0
        run.status = "pending"  # try the other cap on the same upload
        db.session.commit()
