"""A corpus of bad (and awkward but fine) files: each gives a clear message and writes exactly what it promised."""

from __future__ import annotations

import codecs
import gzip
import io
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from portal.models import ImportProblem, ImportRun, PurchaseLine
from tests.conftest import SHARED_DATA
from tests.web.test_imports import LOYALIST, counts, run_id_from, upload, write, xlsx_bytes

HEADER = LOYALIST.splitlines()[0]
GOOD = "\n".join(LOYALIST.splitlines()[1:3]) + "\n"  # two valid lines


def _many_columns() -> bytes:
    return (",".join(f"c{i}" for i in range(10_000)) + "\n" + ",".join("1" for _ in range(10_000)) + "\n").encode()


def _huge_field() -> bytes:
    return (HEADER + "\n" + 'C1,T1,2025-03-01,P1,"' + "x" * 10_000_000 + '",1,1,1,\n').encode()


def _encrypted() -> bytes:
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 4096


def _bomb() -> bytes:
    """A valid-looking workbook whose sheet expands to 60 MB from a few hundred kilobytes."""
    base = zipfile.ZipFile(io.BytesIO(xlsx_bytes([["a", "b"], [1, 2]], extra_sheet=False)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for item in base.infolist():
            data = base.read(item.filename)
            if item.filename.endswith("sheet1.xml"):
                data = data.replace(b"</sheetData>", b"</sheetData>" + b" " * (60 * 1024 * 1024))
            bomb.writestr(item, data)
    return out.getvalue()


REFUSED = [
    ("binary.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40, "binary data"),
    ("program.exe", b"MZ\x90\x00" + b"\x00\x01\x02\xff" * 2000, "binary data"),
    ("empty.csv", b"", "The file is empty."),
    ("blank.csv", b"\n\n  \n", "The file is empty."),
    ("header_only.csv", (HEADER + "\n").encode(), "header row but no data rows"),
    ("missing.csv", b"customer_id,quantity\nC1,2\n", "missing required columns: purchase_date"),
    (
        "dupe_headers.csv",
        b"quantity,Quantity,purchase_date,total_amount,customer_id\n1,1,2025-01-01,1,C\n",
        "appear more than once",
    ),
    ("nul.csv", (HEADER + "\n").encode() + b"C1,T1,2025\x00-03-01,P1,Mug,1,1,1,\n" * 3, "binary data"),
    ("wide.csv", _many_columns(), "10,000 columns"),
    ("huge_field.csv", _huge_field(), "characters"),
    ("encrypted.xlsx", _encrypted(), "password-protected"),
    ("damaged.xlsx", b"PK\x03\x04" + b"\x00" * 200, "Excel"),
    ("bomb.xlsx", _bomb(), "expands to"),
    ("no_header.csv", b"1,2025-01-01,3,4.5\n2,2025-01-02,1,2\n", "not column names"),
    ("ragged.csv", (HEADER + "\n" + GOOD + "C1,T9,2025-03-01,P1,Mug,1,1,1,,extra,more\n").encode(), "Row 4"),
    ("damaged.csv.gz", b"\x1f\x8b\x08\x00" + b"\x00" * 50, "gzip"),
]


@pytest.mark.parametrize("name,payload,message", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_files_say_why_and_write_nothing(runner, db, tmp_path, make_store, app, name, payload, message):
    make_store("Downtown")
    app.config["XLSX_MAX_EXPANDED_MB"] = 40
    try:
        result = runner.invoke(args=["import", "transactions", write(tmp_path, name, payload)])
    finally:
        app.config.pop("XLSX_MAX_EXPANDED_MB")
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert counts(db) == {"lines": 0, "customers": 0, "products": 0, "stock": 0, "consent": 0}


@pytest.mark.parametrize(
    "name,payload,message",
    [REFUSED[0], REFUSED[4], REFUSED[10], REFUSED[8]],
    ids=["binary", "header_only", "encrypted", "wide"],
)
def test_refused_files_through_the_page(client, db, login_as, make_store, name, payload, message):
    make_store("Downtown")
    login_as("admin")
    response = upload(client, "transactions", name, payload, follow=True)
    text = response.get_data(as_text=True)
    if "/mapping" not in response.request.path:
        # Unreadable files are refused at upload, before any run is recorded.
        assert message in text
    else:
        run_id = int(response.request.path.split("/")[2])
        from tests.web.test_imports import confirm

        confirm(client, db, run_id)
        assert message in client.get(f"/imports/{run_id}").get_data(as_text=True)
    assert counts(db)["lines"] == 0


def _rows(*lines: str) -> str:
    return HEADER + "\n" + GOOD + "".join(line + "\n" for line in lines)


ROW_PROBLEMS = [
    ("dates.csv", _rows("C1,T5,31/31/2025,P1,Mug,1,1,1,", "C1,T6,1850-01-01,P1,Mug,1,1,1,"), 2, "unparseable date"),
    ("amounts.csv", _rows("C1,T5,2025-03-01,P1,Mug,1,abc,,", "C1,T6,2025-03-01,P1,Mug,x,1,1,"), 2, "not a number"),
    ("zero_qty.csv", _rows("C1,T5,2025-03-01,P1,Mug,0,1,0,"), 1, "quantity is zero"),
    ("long_id.csv", _rows("C" * 65 + ",T5,2025-03-01,P1,Mug,1,1,1,"), 1, "longer than 64 characters"),
    ("huge_amount.csv", _rows("C1,T5,2025-03-01,P1,Mug,1,1e12,,"), 1, "out of range"),
    ("no_product.csv", _rows("C1,T5,2025-03-01,,,1,1,1,"), 1, "missing required value"),
    ("no_money.csv", _rows("C1,T5,2025-03-01,P1,Mug,1,,,"), 1, "price_per_unit or total_amount"),
]


@pytest.mark.parametrize("name,payload,rejected,reason", ROW_PROBLEMS, ids=[r[0] for r in ROW_PROBLEMS])
def test_bad_rows_are_reported_and_the_rest_imported(runner, db, tmp_path, make_store, name, payload, rejected, reason):
    make_store("Downtown")
    result = runner.invoke(args=["import", "transactions", write(tmp_path, name, payload)])
    assert result.exit_code == 0, result.output
    assert f"imported 2 new lines, 0 already present, {rejected} rejected" in result.stdout
    problems = db.session.scalars(select(ImportProblem).where(ImportProblem.severity == "error")).all()
    assert (
        problems
        and all(reason in p.reason for p in problems)
        and {p.row for p in problems} == set(range(4, 4 + rejected))
    )
    assert counts(db)["lines"] == 2


def test_bad_phone_is_a_warning_and_the_line_is_kept(runner, db, tmp_path, make_store):
    make_store("Downtown")
    payload = _rows("C1,T5,2025-03-01,P1,Mug,1,1,1,555-1234", "C2,T6,2025-03-01,P1,Mug,1,1,1,12345")
    result = runner.invoke(args=["import", "transactions", write(tmp_path, "phones.csv", payload)])
    assert "imported 4 new lines, 0 already present, 0 rejected" in result.stdout
    warnings = db.session.scalars(select(ImportProblem)).all()
    assert {(w.row, w.severity) for w in warnings} == {(4, "warning"), (5, "warning")}
    assert all("invalid phone number" in w.reason for w in warnings)


ACCEPTED = [
    ("bom.csv", codecs.BOM_UTF8 + LOYALIST.encode("utf-8"), 4),
    ("latin1_semicolon.csv", LOYALIST.replace(",", ";").replace("Blue Mug", "Crème Mug").encode("latin-1"), 4),
    ("tabs.tsv", LOYALIST.replace(",", "\t").encode(), 4),
    ("crlf.csv", LOYALIST.replace("\n", "\r\n").encode(), 4),
    ("utf16.csv", LOYALIST.encode("utf-16"), 4),
    ("gzipped.csv.gz", gzip.compress(LOYALIST.encode(), mtime=0), 4),
    ("wrong_extension.txt", LOYALIST.encode(), 4),
    ("formula.csv", LOYALIST.replace("Blue Mug", "=1+1").encode(), 4),
]


@pytest.mark.parametrize("name,payload,lines", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_awkward_but_valid_files_import(runner, db, tmp_path, make_store, name, payload, lines):
    make_store("Downtown")
    result = runner.invoke(args=["import", "transactions", write(tmp_path, name, payload)])
    assert result.exit_code == 0, result.output
    assert f"imported {lines} new lines" in result.stdout
    assert counts(db)["lines"] == lines
    names = set(db.session.scalars(select(func.distinct(PurchaseLine.product_id))))
    assert len(names) == 2


def test_formula_is_stored_as_text_not_evaluated(runner, db, tmp_path, make_store):
    from portal.models import Product

    make_store("Downtown")
    runner.invoke(args=["import", "transactions", write(tmp_path, "f.csv", LOYALIST.replace("Blue Mug", "=1+1"))])
    assert db.session.scalar(select(Product.name).where(Product.external_id == "P1")) == "=1+1"


def test_several_sheets_read_the_first_and_say_so(client, db, login_as, make_store):
    make_store("Downtown")
    login_as("admin")
    payload = xlsx_bytes(
        [
            ["transaction_id", "purchase_date", "product_id", "quantity", "price_per_unit"],
            ["X1", "2025-01-01", "P1", 1, 2.5],
        ]
    )
    run_id = run_id_from(upload(client, "transactions", "two_sheets.xlsx", payload))
    page = client.get(f"/imports/{run_id}/mapping").get_data(as_text=True)
    assert "read the first sheet &#39;Sales&#39; (ignored: &#39;Notes&#39;)" in page


def test_over_the_upload_limit_is_413_with_a_message(client, app, login_as, make_store, db):
    make_store("Downtown")
    login_as("admin")
    app.config["MAX_CONTENT_LENGTH"] = 50_000
    try:
        response = upload(client, "transactions", "big.csv", LOYALIST * 2000)
    finally:
        app.config["MAX_CONTENT_LENGTH"] = 200 * 1024 * 1024
    assert response.status_code == 413 and "larger than the upload limit" in response.get_data(as_text=True)
    assert counts(db)["lines"] == 0 and db.session.scalar(select(func.count()).select_from(ImportRun)) == 0


# -- the real UCI file -----------------------------------------------------------------------------------------

UCI_FILE = Path(SHARED_DATA) / "online_retail_uci.csv.gz"


@pytest.mark.slow
@pytest.mark.skipif(not UCI_FILE.exists(), reason="../shared/data/online_retail_uci.csv.gz not present")
def test_real_uci_file_imports_with_every_row_accounted_for(runner, db, make_store):
    make_store("UK", timezone="Europe/London")
    result = runner.invoke(args=["import", "transactions", str(UCI_FILE)])
    assert result.exit_code == 0, result.output
    run = db.session.scalar(select(ImportRun))
    assert run.total_rows == 541_909
    assert run.new_rows + run.rejected_rows + run.duplicate_rows == run.total_rows
    # 135,080 lines have no CustomerID; two of them are "Adjust bad debt" lines with a negative price (rejected).
    assert run.anonymous_rows == 135_078 and run.rejected_rows == 2
    assert counts(db)["lines"] == run.new_rows
    anonymous = db.session.scalar(
        select(func.count()).select_from(PurchaseLine).where(PurchaseLine.customer_id.is_(None))
    )
    assert anonymous == 135_078
    assert db.session.scalar(select(func.count()).select_from(ImportProblem)) == 2
