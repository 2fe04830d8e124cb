"""Imports: every layout through the page and the CLI, re-import, undo, all or nothing, stores, consent."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import func, select

from portal.models import (
    AuditEntry,
    ConsentEvent,
    Customer,
    ImportProblem,
    ImportRun,
    Job,
    Product,
    PurchaseLine,
    StockLevel,
    Store,
)
from tests.conftest import login, post_form

LOYALIST = """\
customer_id,transaction_id,purchase_date,product_id,product_name,quantity,price_per_unit,total_amount,Mobile
00042,T1,2025-03-01 10:00:00,P1,Blue Mug,2,12.00,24.00,+1 202 555 0142
00042,T1,2025-03-01 10:00:00,P2,Teapot,1,34.00,34.00,+1 202 555 0142
C7,T2,2025-03-02 11:30:00,P1,Blue Mug,1,12.00,12.00,2025550143
,T3,2025-03-03 09:00:00,P2,Teapot,1,34.00,34.00,
"""
UCI = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850.0,United Kingdom
C536379,D,Discount,1,12/1/2010 9:41,27.50,14527.0,United Kingdom
536414,22139,,56,12/1/2010 11:52,0,,United Kingdom
"""
CDNOW = "customer,date,quantity,amount\n00001,19970101,1,11.77\n00002,19970112,1,12.00\n00002,19970112,5,77.00\n"
SEMICOLON = (
    "receipt;date;sku;item;qty;unit_price;client\n"
    "R1;01.03.2025 10:00;S1;Crème Mug;2;3,50;K1\nR1;01.03.2025 10:00;S2;Café Beans;1;12,00;K1\n"
)
SYNONYMS = "Order ID,Client,Order Date,SKU,Item,Qty,Unit Price\nO1,X9,2025-01-05,A1,Apron,1,24\n"


def counts(db) -> dict:
    return {
        name: db.session.scalar(select(func.count()).select_from(model))
        for name, model in (
            ("lines", PurchaseLine),
            ("customers", Customer),
            ("products", Product),
            ("stock", StockLevel),
            ("consent", ConsentEvent),
        )
    }


def write(tmp_path, name, payload) -> str:
    path = tmp_path / name
    path.write_bytes(payload.encode("utf-8") if isinstance(payload, str) else payload)
    return str(path)


def xlsx_bytes(rows, extra_sheet=True) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sales"
    for row in rows:
        ws.append(row)
    if extra_sheet:
        wb.create_sheet("Notes").append(["only the first sheet is read"])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def cli(runner, *args):
    return runner.invoke(args=["import", *args])


def upload(client, kind, name, payload, store_id=0, all_or_nothing=False, follow=False):
    """Upload through the real form (CSRF from the page); returns the response (a redirect to the mapping page)."""
    data = {
        "kind": kind,
        "store_id": str(store_id),
        "file": (io.BytesIO(payload if isinstance(payload, bytes) else payload.encode("utf-8")), name),
    }
    if all_or_nothing:
        data["all_or_nothing"] = "y"
    return post_form(
        client, "/imports", data, token_from="/imports", content_type="multipart/form-data", follow_redirects=follow
    )


def confirm(client, db, run_id, overrides=None, all_or_nothing=None):
    run = db.session.get(ImportRun, run_id)
    mapping = {**run.mapping, **(overrides or {})}
    data = {f"map_{field}": header for field, header in mapping.items() if header}
    keep = (run.options or {}).get("all_or_nothing") if all_or_nothing is None else all_or_nothing
    if keep:
        data["all_or_nothing"] = "y"
    return post_form(client, f"/imports/{run_id}/mapping", data)


def run_id_from(response) -> int:
    return int(re.search(r"/imports/(\d+)", response.headers["Location"]).group(1))


# -- each layout, through the page and through the CLI ------------------------------------------------------


def test_loyalist_file_through_the_page(client, db, login_as, make_store):
    make_store("Downtown")
    login_as("admin")
    response = upload(client, "transactions", "sales.csv", LOYALIST)
    assert response.status_code == 302
    run_id = run_id_from(response)
    page = client.get(f"/imports/{run_id}/mapping").get_data(as_text=True)
    assert "loyalist" in page and "Blue Mug" in page and "+1 202 555 0142" in page  # preview, phone text kept
    assert counts(db)["lines"] == 0  # nothing written before confirming
    done = confirm(client, db, run_id)
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/imports/{run_id}")
    result = client.get(f"/imports/{run_id}").get_data(as_text=True)
    assert "Imported 4 new lines, 0 already present, 0 rejected, 1 anonymous" in result
    assert counts(db) == {"lines": 4, "customers": 2, "products": 2, "stock": 0, "consent": 0}
    customer = db.session.scalar(select(Customer).where(Customer.external_id == "00042"))
    assert customer.phone == "+12025550142" and customer.sms_consent == "unknown"  # a phone alone implies nothing
    run = db.session.get(ImportRun, run_id)
    job = db.session.get(Job, run.job_id)
    assert job.status == "done" and job.progress == 1.0 and "4 new lines" in job.message


LAYOUTS = [
    ("loyalist.csv", LOYALIST, 4, 1),
    ("uci.csv", UCI, 4, 1),
    ("cdnow.csv", CDNOW, 3, 0),
    ("semicolon_latin1.csv", SEMICOLON.encode("latin-1"), 2, 0),
    ("synonyms.csv", SYNONYMS, 1, 0),
    (
        "sales.xlsx",
        xlsx_bytes(
            [
                [
                    "customer_id",
                    "transaction_id",
                    "purchase_date",
                    "product_id",
                    "product_name",
                    "quantity",
                    "price_per_unit",
                    "total_amount",
                    "Mobile",
                ],
                ["00042", "X1", "2025-03-01 10:00:00", "P1", "Mug", 2, 12.0, 24.0, "+12025550142"],
                [None, "X2", "2025-03-02 10:00:00", "P1", "Mug", 1, 12.0, 12.0, None],
            ]
        ),
        2,
        1,
    ),
]


@pytest.mark.parametrize("name,payload,lines,anonymous", LAYOUTS, ids=[layout[0] for layout in LAYOUTS])
def test_each_layout_through_the_cli(runner, db, tmp_path, make_store, name, payload, lines, anonymous):
    make_store("Downtown")
    result = cli(runner, "transactions", write(tmp_path, name, payload))
    assert result.exit_code == 0, result.output
    assert f"imported {lines:,} new lines, 0 already present, 0 rejected, {anonymous} anonymous" in result.stdout
    assert counts(db)["lines"] == lines


@pytest.mark.parametrize("name,payload,lines,anonymous", LAYOUTS, ids=[layout[0] for layout in LAYOUTS])
def test_each_layout_through_the_page(client, db, login_as, make_store, name, payload, lines, anonymous):
    make_store("Downtown")
    login_as("admin")
    run_id = run_id_from(upload(client, "transactions", name, payload))
    assert confirm(client, db, run_id).status_code == 302
    run = db.session.get(ImportRun, run_id)
    assert (run.status, run.new_rows, run.anonymous_rows) == ("done", lines, anonymous)


def test_layout_details_survive(runner, db, tmp_path, make_store):
    make_store("Downtown")
    assert cli(runner, "transactions", write(tmp_path, "uci.csv", UCI)).exit_code == 0
    ret = db.session.scalar(select(PurchaseLine).where(PurchaseLine.transaction_ref == "C536379"))
    assert float(ret.quantity) == -1 and float(ret.amount) == -27.5  # a 'C' invoice is a return
    assert db.session.scalar(select(Customer.external_id).where(Customer.external_id == "17850")) == "17850"
    cdnow = write(tmp_path, "cdnow.csv", CDNOW)  # 1997, years before the store's 2010 lines: stale by design
    assert cli(runner, "transactions", cdnow, "--stale-ok").exit_code == 0
    refs = set(db.session.scalars(select(PurchaseLine.transaction_ref).where(PurchaseLine.transaction_ref.like("%@%"))))
    assert refs == {"00001@1997-01-01", "00002@1997-01-12"}  # customer + date is the transaction
    assert cli(runner, "transactions", write(tmp_path, "s.csv", SEMICOLON.encode("latin-1"))).exit_code == 0
    assert db.session.scalar(select(Product.name).where(Product.external_id == "S1")) == "Crème Mug"


# -- re-import, options, mapping ---------------------------------------------------------------------------


def test_reimport_adds_nothing_twice(runner, db, tmp_path, make_store):
    make_store("Downtown")
    path = write(tmp_path, "sales.csv", LOYALIST)
    assert "imported 4 new lines, 0 already present" in cli(runner, "transactions", path).stdout
    again = cli(runner, "transactions", path)
    assert again.exit_code == 0 and "imported 0 new lines, 4 already present" in again.stdout
    assert counts(db)["lines"] == 4


def test_valid_rows_by_default_and_the_report(client, runner, db, tmp_path, make_store, login_as):
    make_store("Downtown")
    bad = LOYALIST + "C8,T4,yesterday,P1,Blue Mug,1,12.00,12.00,\nC8,T5,2025-03-04,P1,Blue Mug,1,twelve,,\n"
    result = cli(runner, "transactions", write(tmp_path, "bad.csv", bad))
    assert result.exit_code == 0
    assert "imported 4 new lines, 0 already present, 2 rejected (see report: " in result.stdout
    assert counts(db)["lines"] == 4
    run = db.session.scalar(select(ImportRun).order_by(ImportRun.id.desc()))
    problems = {(p.row, p.column, p.value, p.reason) for p in db.session.scalars(select(ImportProblem))}
    assert (6, "purchase_date", "yesterday", "unparseable date (expected YYYY-MM-DD)") in problems
    assert any(p[0] == 7 and p[1] == "price_per_unit" and p[2] == "twelve" and "not a number" in p[3] for p in problems)
    login_as("admin")
    page = client.get(f"/imports/{run.id}").get_data(as_text=True)
    assert "yesterday" in page and "unparseable date" in page
    csv_text = client.get(f"/imports/{run.id}/problems.csv").get_data(as_text=True)
    assert csv_text.splitlines()[0] == "row,column,value,reason,severity" and "6,purchase_date,yesterday" in csv_text


def test_all_or_nothing_refuses_the_file_and_keeps_the_report(client, runner, db, tmp_path, make_store, login_as):
    make_store("Downtown")
    bad = LOYALIST + "C8,T4,yesterday,P1,Blue Mug,1,12.00,12.00,\n"
    result = cli(runner, "transactions", write(tmp_path, "bad.csv", bad), "--all-or-nothing")
    assert result.exit_code == 1 and "nothing was imported (all or nothing)" in result.stderr
    assert counts(db) == {"lines": 0, "customers": 0, "products": 0, "stock": 0, "consent": 0}
    login_as("admin")
    run_id = run_id_from(upload(client, "transactions", "bad.csv", bad, all_or_nothing=True))
    confirm(client, db, run_id)
    run = db.session.get(ImportRun, run_id)
    assert run.status == "refused" and run.rejected_rows == 1 and counts(db)["lines"] == 0
    page = client.get(f"/imports/{run_id}").get_data(as_text=True)
    assert "all or nothing" in page and "yesterday" in page


def test_missing_required_columns_are_named(client, runner, db, tmp_path, make_store, login_as):
    make_store("Downtown")
    path = write(tmp_path, "nodate.csv", "transaction_id,product_id,quantity,price_per_unit\nT1,P1,1,2\n")
    result = cli(runner, "transactions", path)
    assert result.exit_code == 1 and "missing required columns: purchase_date" in result.stderr
    login_as("admin")
    run_id = run_id_from(upload(client, "transactions", "nodate.csv", open(path, "rb").read()))
    page = client.get(f"/imports/{run_id}/mapping").get_data(as_text=True)
    assert "Required fields not found in the file: purchase_date" in page
    refused = confirm(client, db, run_id)
    assert refused.status_code == 400 and "Required fields are not mapped: purchase_date" in refused.get_data(
        as_text=True
    )
    assert counts(db)["lines"] == 0 and db.session.get(ImportRun, run_id).status == "pending"


def test_mapping_corrected_on_the_page_and_with_map(client, runner, db, tmp_path, make_store, login_as):
    make_store("Downtown")
    odd = "when,ref,what,n,each\n2025-02-01,T9,P9,3,1.50\n"
    result = cli(
        runner,
        "transactions",
        write(tmp_path, "odd.csv", odd),
        "--map",
        "when=purchase_date",
        "--map",
        "ref=transaction_id",
        "--map",
        "what=product_id",
        "--map",
        "n=quantity",
        "--map",
        "each=price_per_unit",
    )
    assert result.exit_code == 0 and "imported 1 new lines" in result.stdout
    assert cli(runner, "transactions", write(tmp_path, "odd.csv", odd), "--map", "when").exit_code == 2
    login_as("admin")
    odd2 = odd.replace("T9", "T10")
    run_id = run_id_from(upload(client, "transactions", "odd.csv", odd2))
    confirm(
        client,
        db,
        run_id,
        {
            "purchase_date": "when",
            "transaction_id": "ref",
            "product_id": "what",
            "quantity": "n",
            "price_per_unit": "each",
        },
    )
    run = db.session.get(ImportRun, run_id)
    assert run.status == "done" and run.new_rows == 1
    assert float(db.session.scalar(select(PurchaseLine.amount).where(PurchaseLine.transaction_ref == "T10"))) == 4.5


# -- undo -----------------------------------------------------------------------------------------------------


def test_undo_says_what_changes_then_removes_lines(client, runner, db, tmp_path, make_store, login_as):
    make_store("Downtown")
    cli(runner, "transactions", write(tmp_path, "sales.csv", LOYALIST))
    run = db.session.scalar(select(ImportRun))
    login_as("admin")
    page = client.get(f"/imports/{run.id}").get_data(as_text=True)
    assert "Undo removes 4 lines of 2 customers; customer records stay" in page
    response = post_form(client, f"/imports/{run.id}/undo", {}, token_from=f"/imports/{run.id}", follow_redirects=True)
    assert "removed 4 lines" in response.get_data(as_text=True)
    assert counts(db)["lines"] == 0 and counts(db)["customers"] == 2
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "import.undo")).detail["removed"] == 4
    again = post_form(client, f"/imports/{run.id}/undo", {}, token_from="/imports", follow_redirects=True)
    assert "was undone on" in again.get_data(as_text=True)
    # After an undo the same file imports again as new.
    assert "imported 4 new lines" in cli(runner, "transactions", write(tmp_path, "sales.csv", LOYALIST)).stdout


def test_undo_rescores_the_customers_it_touched(client, runner, db, tmp_path, make_store, login_as):
    make_store("Downtown")
    cli(runner, "transactions", write(tmp_path, "march.csv", LOYALIST))
    later = (
        "customer_id,transaction_id,purchase_date,product_id,product_name,quantity,price_per_unit,total_amount\n"
        "00042,T9,2025-04-01 10:00:00,P1,Blue Mug,5,12.00,60.00\n"
    )
    cli(runner, "transactions", write(tmp_path, "april.csv", later))
    customer = db.session.scalar(select(Customer).where(Customer.external_id == "00042"))
    assert (float(customer.monetary), customer.frequency) == (118.0, 2)
    second = db.session.scalar(select(ImportRun).order_by(ImportRun.id.desc()))
    login_as("admin")
    assert "everyone is re-scored right after" in client.get(f"/imports/{second.id}").get_data(as_text=True)
    post_form(client, f"/imports/{second.id}/undo", {}, token_from=f"/imports/{second.id}")
    db.session.expire_all()
    customer = db.session.get(Customer, customer.id)
    assert (float(customer.monetary), customer.frequency) == (58.0, 1)
    job = db.session.scalar(select(Job).order_by(Job.created_at.desc()))
    assert job.title == f"Re-score after undoing import #{second.id}" and job.status == "done"
    # Undoing the first import too leaves the customers without purchases: no stale scores remain.
    first = db.session.scalar(select(ImportRun).order_by(ImportRun.id))
    post_form(client, f"/imports/{first.id}/undo", {}, token_from=f"/imports/{first.id}")
    db.session.expire_all()
    customer = db.session.get(Customer, customer.id)
    assert (customer.monetary, customer.frequency, customer.churn_priority) == (None, None, None)
    assert customer.scored_at is not None


def test_stock_import_and_undo(runner, db, tmp_path, make_store, client, login_as):
    store = make_store("Downtown")
    stock = "product_id,product_name,initial_stock,total_sold,price\nP1,Blue Mug,100,20,12\nP2,Teapot,10,9,34\n"
    result = cli(runner, "stock", write(tmp_path, "stock.csv", stock), "--as-of", "2025-06-30")
    assert result.exit_code == 0 and "imported 2 new stock levels" in result.stdout
    level = db.session.scalar(select(StockLevel).join(Product).where(Product.external_id == "P1"))
    assert float(level.initial_stock) == 100 and level.store_id == store.id and str(level.as_of) == "2025-06-30"
    changed = stock.replace("100,20", "100,25")
    assert (
        "imported 0 new stock levels, 1 updated, 1 already present"
        in cli(runner, "stock", write(tmp_path, "stock2.csv", changed)).stdout
    )
    by_name = "product_name,initial_stock,total_sold\nTeapot,12,10\n"
    cli(runner, "stock", write(tmp_path, "names.csv", by_name))
    assert counts(db)["products"] == 2  # matched the known product by its name
    last = db.session.scalar(select(ImportRun).order_by(ImportRun.id.desc()))
    login_as("admin")
    assert "Undo removes 1 stock levels" in client.get(f"/imports/{last.id}").get_data(as_text=True)


# -- customers and consent ------------------------------------------------------------------------------------


def test_customers_file_consent_rules(runner, db, tmp_path, make_store, make_customer):
    store = make_store("Downtown")
    make_customer(store=store, external_id="C3", sms_consent="opted_out")
    people = (
        "customer_id,first_name,last_name,phone,email,store,sms_consent,sms_consent_date\n"
        "C1,Ann,Lee,202-555-0142,ann@example.com,Downtown,yes,2025-01-10\n"
        "C2,Bob,Ray,202-555-0143,not-an-email,,no,2025-02-01\n"
        "C3,Cat,Kim,202-555-0144,,,yes,2025-03-01\n"
        "C4,Dan,Poe,202-555-0145,,,,\n"
    )
    result = cli(runner, "customers", write(tmp_path, "people.csv", people))
    assert result.exit_code == 0, result.output
    assert "imported 3 new customers" in result.stdout and "2 consent changes" in result.stdout
    got = {c.external_id: c for c in db.session.scalars(select(Customer))}
    assert got["C1"].sms_consent == "opted_in" and got["C1"].sms_consent_source == "import"
    assert got["C1"].sms_consent_at.date().isoformat() == "2025-01-10" and got["C1"].name == "Ann Lee"
    assert got["C2"].sms_consent == "opted_out" and got["C2"].email is None
    assert got["C3"].sms_consent == "opted_out"  # an earlier opt-out wins over the file's yes
    assert got["C4"].sms_consent == "unknown" and got["C4"].phone == "+12025550145"  # a phone alone implies nothing
    events = db.session.scalars(select(ConsentEvent)).all()
    assert {(e.status, e.source) for e in events} == {("opted_in", "import"), ("opted_out", "import")}
    reasons = [p.reason for p in db.session.scalars(select(ImportProblem))]
    assert any("opt-out wins" in r for r in reasons) and any("e-mail" in r or "email" in r for r in reasons)
    again = cli(runner, "customers", write(tmp_path, "people.csv", people))
    assert "imported 0 new customers" in again.stdout and "0 consent changes" in again.stdout
    assert len(db.session.scalars(select(ConsentEvent)).all()) == 2


# -- stores and roles -------------------------------------------------------------------------------------------


def test_stores_from_column_option_and_default(runner, db, tmp_path, make_store):
    sales = LOYALIST.replace("Mobile\n", "Mobile,store\n", 1)
    lines = sales.splitlines()
    sales = (
        "\n".join([lines[0], lines[1] + ",Harbor", lines[2] + ",harbor", lines[3] + ",Nowhere", lines[4] + ","]) + "\n"
    )
    result = cli(runner, "transactions", write(tmp_path, "s.csv", sales))
    assert result.exit_code == 0
    assert db.session.scalar(select(Store.name)) == "Main"  # created as the default store when none exists
    assert "3 rejected" in result.stdout  # Harbor (twice) is not a store yet, and Nowhere never is
    make_store("Harbor")
    make_store("Uptown")
    result = cli(runner, "transactions", write(tmp_path, "s.csv", sales))
    assert "imported 2 new lines, 1 already present, 1 rejected" in result.stdout
    extra = "transaction_id,purchase_date,product_id,quantity,price_per_unit\nT4,2025-03-05,P1,1,12\n"
    assert cli(runner, "transactions", write(tmp_path, "t4.csv", extra), "--store", "uptown").exit_code == 0
    stores = dict(db.session.execute(select(PurchaseLine.transaction_ref, Store.name).join(Store)).all())
    assert stores == {"T1": "Harbor", "T3": "Main", "T4": "Uptown"}
    problem = db.session.scalar(select(ImportProblem).where(ImportProblem.value == "Nowhere"))
    assert "unknown store" in problem.reason and problem.column == "store"
    assert cli(runner, "transactions", write(tmp_path, "s.csv", sales), "--store", "Mars").exit_code == 1


def test_manager_imports_only_into_own_store(client, db, make_store, make_user):
    home, other = make_store("Home"), make_store("Other")
    manager = make_user("manager", store=home)
    login(client, manager.email)
    form_page = client.get("/imports").get_data(as_text=True)
    assert ">Home<" in form_page and ">Other<" not in form_page
    refused = upload(client, "transactions", "s.csv", LOYALIST, store_id=other.id)
    assert refused.status_code == 400  # not a choice they have
    sales = LOYALIST.replace("Mobile\n", "Mobile,store\n", 1).replace("+1 202 555 0142\n", "+1 202 555 0142,Other\n")
    run_id = run_id_from(upload(client, "transactions", "s.csv", sales, store_id=home.id))
    confirm(client, db, run_id)
    run = db.session.get(ImportRun, run_id)
    assert run.new_rows == 2 and run.rejected_rows == 2
    assert {p.reason for p in db.session.scalars(select(ImportProblem))} == {
        "you can import only into your store 'Home'"
    }
    assert set(db.session.scalars(select(PurchaseLine.store_id))) == {home.id}


def test_marketer_sees_history_read_only(client, db, runner, tmp_path, make_store, make_user):
    store = make_store("Downtown")
    cli(runner, "transactions", write(tmp_path, "sales.csv", LOYALIST))
    run = db.session.scalar(select(ImportRun))
    marketer = make_user("marketer")
    login(client, marketer.email)
    page = client.get("/imports").get_data(as_text=True)
    assert "sales.csv" in page and "Upload and check" not in page
    assert client.get(f"/imports/{run.id}").status_code == 200
    token_page = f"/imports/{run.id}"
    assert post_form(client, f"/imports/{run.id}/undo", {}, token_from=token_page).status_code == 403
    assert (
        post_form(
            client, "/imports", {"kind": "transactions", "store_id": str(store.id)}, token_from=token_page
        ).status_code
        == 403
    )
    assert counts(db)["lines"] == 4


def test_manager_cannot_see_other_stores_imports(client, db, runner, tmp_path, make_store, make_user):
    make_store("Downtown")
    other = make_store("Other")
    cli(runner, "transactions", write(tmp_path, "sales.csv", LOYALIST))
    run = db.session.scalar(select(ImportRun))
    manager = make_user("manager", store=other)
    login(client, manager.email)
    assert client.get(f"/imports/{run.id}").status_code == 404
    assert "sales.csv" not in client.get("/imports").get_data(as_text=True)


# -- atomicity ------------------------------------------------------------------------------------------------


def test_failure_half_way_through_the_merge_leaves_the_database_as_it_was(
    runner, db, tmp_path, make_store, monkeypatch
):
    from portal.services.importer import merge

    make_store("Downtown")
    cli(runner, "transactions", write(tmp_path, "first.csv", LOYALIST))
    before = counts(db)
    real = merge._run
    calls = {"n": 0}

    def failing(conn, sql, **params):
        if "INSERT INTO purchase_lines" in sql:  # products and customers were already inserted by now
            raise RuntimeError("disk full")
        calls["n"] += 1
        return real(conn, sql, **params)

    monkeypatch.setattr(merge, "_run", failing)
    more = LOYALIST.replace("T1", "T8").replace("00042", "NEW1").replace("P2", "P99")
    result = cli(runner, "transactions", write(tmp_path, "second.csv", more))
    assert calls["n"] >= 3  # it did get half-way
    assert result.exit_code != 0
    assert counts(db) == before
    run = db.session.scalar(select(ImportRun).order_by(ImportRun.id.desc()))
    assert run.status == "failed" and "nothing was written" in run.message


def test_html_in_values_is_shown_escaped(client, db, make_store, login_as):
    make_store("Downtown")
    login_as("admin")
    evil = LOYALIST.replace("Blue Mug", "<script>alert(1)</script>").replace("yesterday", "x")
    evil += "C9,T9,<b>bad</b>,P1,Mug,1,1,1,\n"
    run_id = run_id_from(upload(client, "transactions", "evil.csv", evil))
    mapping_page = client.get(f"/imports/{run_id}/mapping").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in mapping_page and "&lt;script&gt;alert(1)&lt;/script&gt;" in mapping_page
    confirm(client, db, run_id)
    result = client.get(f"/imports/{run_id}").get_data(as_text=True)
    assert "<b>bad</b>" not in result and "&lt;b&gt;bad&lt;/b&gt;" in result


def test_problem_csv_neutralises_formulas(client, db, runner, tmp_path, make_store, login_as):
    make_store("Downtown")
    cli(runner, "transactions", write(tmp_path, "f.csv", LOYALIST + 'C9,T9,=HYPERLINK("http://x"),P1,Mug,1,1,1,\n'))
    run = db.session.scalar(select(ImportRun))
    login_as("admin")
    text = client.get(f"/imports/{run.id}/problems.csv").get_data(as_text=True)
    assert "'=HYPERLINK" in text


def test_sample_buttons(client, db, make_store, login_as):
    from portal.imports.views import _samples

    if not _samples():
        pytest.skip("data/samples/ not generated")
    make_store("Downtown")
    login_as("admin")
    name = next(n for n, kind in _samples() if kind == "transactions")
    response = post_form(client, f"/imports/samples/{name}", {}, token_from="/imports")
    assert response.status_code == 302 and "/mapping" in response.headers["Location"]
    assert counts(db)["lines"] == 0
