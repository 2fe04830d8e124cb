"""The mapping page's first look at a transactions file: its dates against the store's, stores, new customers,
and the confirmation a stale file needs (page and CLI)."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, select

from portal.models import ImportRun, PurchaseLine
from tests.conftest import post_form
from tests.web.test_imports import cli, confirm, run_id_from, upload, write

HEADER = "customer_id,transaction_id,purchase_date,product_id,product_name,quantity,price_per_unit,total_amount\n"
TODAY = date.today()
FIRST, LAST = TODAY - timedelta(days=700), TODAY - timedelta(days=10)
STORE_DATA = HEADER + "".join(
    f"{c},S{i},{d.isoformat()} 10:00:00,P1,Blue Mug,1,12.00,12.00\n"
    for i, (c, d) in enumerate([("C1", FIRST), ("C2", FIRST + timedelta(days=300)), ("17850", LAST)])
)
# UCI Online Retail, December 2010: 17850 is already a customer, 13047 and 12583 are new
UCI_2010 = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom
536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,12/1/2010 8:34,1.69,13047.0,United Kingdom
536370,22728,ALARM CLOCK BAKELIKE PINK,24,12/9/2010 8:45,3.75,12583.0,France
536371,22086,PAPER CHAIN KIT 50'S CHRISTMAS,80,12/9/2010 9:00,2.55,,United Kingdom
"""
RECENT = HEADER + f"C9,R1,{(TODAY - timedelta(days=3)).isoformat()} 09:00:00,P1,Blue Mug,1,12.00,12.00\n"


def stored_lines(db) -> int:
    return db.session.scalar(select(func.count()).select_from(PurchaseLine))


def store_with_data(runner, tmp_path, make_store):
    store = make_store("Downtown")
    result = cli(runner, "transactions", write(tmp_path, "history.csv", STORE_DATA), "--store", "Downtown")
    assert result.exit_code == 0, result.output
    return store


def mapping_page(client, run_id) -> str:
    return client.get(f"/imports/{run_id}/mapping").get_data(as_text=True)


def test_a_2010_file_into_a_recent_store_shows_dates_stores_new_customers_and_a_stale_warning(
    client, db, login_as, runner, tmp_path, make_store
):
    store_with_data(runner, tmp_path, make_store)
    login_as("admin")
    run_id = run_id_from(upload(client, "transactions", "uci-2010.csv", UCI_2010))
    html = mapping_page(client, run_id)
    assert "2010-12-01 to 2010-12-09" in html  # the file's purchases
    assert f"{FIRST.isoformat()} to {LAST.isoformat()} for Downtown · today is 20" in html  # the store's local today
    assert 'file-stores">Downtown' in html
    assert "3 customers in the file, 2 new (not yet in the database)" in html  # 17850 is known
    assert "stale-warning" in html and f"{(LAST - date(2010, 12, 9)).days:,} days before the latest purchase" in html
    assert 'name="stale_ok"' in html
    assert stored_lines(db) == 3  # nothing written by looking


def test_a_stale_file_is_refused_without_the_confirmation_and_imported_with_it(
    client, db, login_as, runner, tmp_path, make_store
):
    store_with_data(runner, tmp_path, make_store)
    login_as("admin")
    run_id = run_id_from(upload(client, "transactions", "uci-2010.csv", UCI_2010))
    refused = confirm(client, db, run_id)
    assert refused.status_code == 400
    text = refused.get_data(as_text=True)
    assert "This file&#39;s purchases end on 2010-12-09" in text and "--stale-ok" in text
    assert db.session.get(ImportRun, run_id).status == "pending" and stored_lines(db) == 3

    run = db.session.get(ImportRun, run_id)
    data = {f"map_{f}": h for f, h in run.mapping.items() if h} | {"stale_ok": "y"}
    done = post_form(client, f"/imports/{run_id}/mapping", data)
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/imports/{run_id}")
    db.session.expire_all()
    assert db.session.get(ImportRun, run_id).status == "done" and stored_lines(db) == 7


def test_the_cli_refuses_a_stale_file_with_the_reason_unless_stale_ok(runner, db, tmp_path, make_store):
    store_with_data(runner, tmp_path, make_store)
    path = write(tmp_path, "uci-2010.csv", UCI_2010)
    refused = cli(runner, "transactions", path, "--store", "Downtown")
    assert refused.exit_code == 1
    assert "purchases end on 2010-12-09" in refused.output and "--stale-ok" in refused.output
    assert "purchases 2010-12-01 to 2010-12-09" in refused.output and "3 customers, 2 new" in refused.output
    assert stored_lines(db) == 3
    done = cli(runner, "transactions", path, "--store", "Downtown", "--stale-ok")
    assert done.exit_code == 0, done.output
    assert stored_lines(db) == 7


def test_a_recent_file_shows_its_check_without_a_stale_warning(client, db, login_as, runner, tmp_path, make_store):
    store_with_data(runner, tmp_path, make_store)
    login_as("admin")
    run_id = run_id_from(upload(client, "transactions", "recent.csv", RECENT))
    html = mapping_page(client, run_id)
    day = (TODAY - timedelta(days=3)).isoformat()
    assert f"{day} to {day}" in html and "1 customer in the file, 1 new" in html
    assert "stale-warning" not in html and 'name="stale_ok"' not in html
    assert confirm(client, db, run_id).status_code == 302
    assert cli(runner, "transactions", write(tmp_path, "recent2.csv", RECENT.replace("R1", "R2"))).exit_code == 0
