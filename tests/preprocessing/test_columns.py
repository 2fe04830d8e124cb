"""Reading uploaded files, mapping their columns and the row-level report (preprocessing.columns)."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from preprocessing.columns import (
    FIELD_SIZE_LIMIT,
    UNKNOWN_PRODUCT,
    FileFormatError,
    ValidationState,
    apply_overrides,
    detect_mapping,
    missing_required,
    read_table,
    validate_chunk,
)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LOYALIST = [
    "customer_id",
    "transaction_id",
    "purchase_date",
    "product_id",
    "product_name",
    "quantity",
    "price_per_unit",
    "total_amount",
    "Mobile",
]
UCI = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]


def read_all(source, filename="upload.csv", **kwargs) -> tuple[pd.DataFrame, object]:
    with read_table(source, filename, **kwargs) as reader:
        chunks = list(reader)
        return (pd.concat(chunks) if chunks else pd.DataFrame(columns=reader.headers)), reader


def validate(rows: list[list[str]], headers: list[str], kind="transactions", **kwargs):
    chunk = pd.DataFrame(rows, columns=headers, dtype=object)
    chunk.index = pd.RangeIndex(2, 2 + len(rows))
    mapping = detect_mapping(headers, kind)
    return validate_chunk(chunk, mapping, kind, **kwargs)


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def test_utf8_bom_is_removed_and_ids_stay_text():
    data = "\ufeffcustomer_id,Mobile,qty\n00042,+12025550142,1\n".encode("utf-8")
    table, reader = read_all(io.BytesIO(data))
    assert reader.headers == ["customer_id", "Mobile", "qty"]
    assert reader.encoding == "utf-8-sig"
    assert table.iloc[0].tolist() == ["00042", "+12025550142", "1"]


def test_latin1_fallback_is_detected_and_stated():
    data = "product;price\nCafé crème;3,50\n".encode("latin-1")
    table, reader = read_all(io.BytesIO(data))
    assert reader.encoding == "latin-1" and reader.delimiter == ";"
    assert table["product"].iloc[0] == "Café crème"
    assert "Latin-1" in reader.describe() and "semicolon" in reader.describe()


def test_windows_1252_euro_sign():
    data = "product,price\nMug,\x80 5\n".encode("latin-1")  # 0x80 is the euro sign in Windows-1252
    table, reader = read_all(io.BytesIO(data))
    assert reader.encoding == "cp1252"
    assert table["price"].iloc[0] == "€ 5"


def test_excel_unicode_text_export_utf16_tab():
    data = "customer_id\tMobile\tqty\n00042\t+12025550142\t1\n".encode("utf-16")
    table, reader = read_all(io.BytesIO(data))
    assert (reader.encoding, reader.delimiter) == ("utf-16", "\t")
    assert table.iloc[0].tolist() == ["00042", "+12025550142", "1"]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(delimiter):
    lines = ["invoice,date,sku,qty,amount", "A1,2026-01-02,SKU-1,2,\"3.00\"", "A2,2026-01-03,SKU-2,1,4.50"]
    text = "\n".join(line.replace(",", delimiter) for line in lines) + "\n"
    table, reader = read_all(io.BytesIO(text.encode()))
    assert reader.delimiter == delimiter
    assert reader.headers == ["invoice", "date", "sku", "qty", "amount"]
    assert table["sku"].tolist() == ["SKU-1", "SKU-2"]


def test_gzip_is_detected_by_content_not_name(tmp_path):
    path = tmp_path / "export.csv"  # no .gz in the name
    path.write_bytes(gzip.compress(b"customer,date,quantity,amount\n00001,19970101,1,11.77\n"))
    table, reader = read_all(path)
    assert reader.compression == "gzip"
    assert table.iloc[0].tolist() == ["00001", "19970101", "1", "11.77"]


def test_row_numbers_count_the_header_and_survive_chunks_and_blank_lines():
    data = b"a,b\n1,x\n2,y\n\n4,z\n5,w\n"
    with read_table(io.BytesIO(data), "t.csv", chunksize=2) as reader:
        chunks = list(reader)
    assert [list(c.index) for c in chunks] == [[2, 3], [5], [6]]  # row 4 is blank and skipped
    assert pd.concat(chunks)["a"].tolist() == ["1", "2", "4", "5"]


def test_non_seekable_stream_is_accepted():
    class Stream(io.RawIOBase):
        def __init__(self, payload):
            self._inner = io.BytesIO(payload)

        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = self._inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    table, _ = read_all(Stream(b"a,b\n1,2\n"))
    assert table.iloc[0].tolist() == ["1", "2"]


def test_preview_can_be_taken_before_reading_everything():
    with read_table(io.BytesIO(b"a,b\n1,2\n3,4\n5,6\n"), "t.csv") as reader:
        assert reader.preview(2)["a"].tolist() == ["1", "3"]
        assert sum(len(c) for c in reader) == 3


def make_xlsx(path: Path, rows: list[list], extra_sheet=False) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sales"
    for row in rows:
        ws.append(row)
    if extra_sheet:
        wb.create_sheet("Notes").append(["ignore me"])
    wb.save(path)
    return path


def test_xlsx_cells_become_text_like_the_csv_would_have_them(tmp_path):
    path = make_xlsx(
        tmp_path / "sales.xlsx",
        [
            ["CustomerID", "InvoiceDate", "UnitPrice", "Quantity", "Mobile", "Day"],
            [12346.0, datetime(2010, 12, 1, 8, 26), 2.55, 6, "+12025550142", datetime(2011, 1, 5)],
            [None, None, None, None, None, None],
            ["00042", datetime(2010, 12, 2, 9, 0), 0.1, 1, 2025550142, datetime(2011, 1, 6)],
        ],
        extra_sheet=True,
    )
    table, reader = read_all(path, "sales.xlsx")
    assert reader.format == "xlsx" and reader.sheet_name == "Sales"
    assert "first sheet 'Sales'" in reader.describe() and "'Notes'" in reader.describe()
    assert list(table.index) == [2, 4]  # the sheet's own row numbers; the empty row 3 is skipped
    assert table.iloc[0].tolist() == ["12346", "2010-12-01 08:26:00", "2.55", "6", "+12025550142", "2011-01-05"]
    assert table.iloc[1].tolist() == ["00042", "2010-12-02 09:00:00", "0.1", "1", "2025550142", "2011-01-06"]


def _zip_bytes(name: str, payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, payload)
    return buffer.getvalue()


BAD_FILES = {
    "empty": (b"", "empty"),
    "only whitespace": (b"  \n\n \r\n", "empty"),
    "no header row": (b"00001,19970101,1,11.77\n00002,19970102,2,5.00\n", "header row"),
    "binary garbage": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "binary"),
    "encrypted xlsx / old xls": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "password"),
    "corrupt xlsx": (b"PK\x03\x04" + b"\x13\x37" * 300, "damaged"),
    "zip that is not a workbook": (_zip_bytes("notes.txt", b"hello"), "not an Excel"),
    "duplicated headers": (b"date,qty,Qty,amount\n2026-01-01,1,2,3\n", "more than once"),
    "too many columns": ((",".join(f"c{i}" for i in range(501)) + "\n").encode(), "501 columns"),
    "a value over the size cap": (b"a,b\n1," + b"x" * (FIELD_SIZE_LIMIT + 10) + b"\n", "limit"),
    "ragged row": (b"a,b,c\n1,2,3\n4,5,6,7\n", "Row 3 has 4 values"),
    "corrupt gzip": (gzip.compress(b"a,b\n1,2\n" * 100)[:30], "gzip"),
}


@pytest.mark.parametrize("payload, message", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_unreadable_files_are_refused_with_a_clear_message(payload, message):
    with pytest.raises(FileFormatError) as caught:
        read_all(io.BytesIO(payload), "upload.csv")
    assert message.lower() in caught.value.message.lower()


def test_bad_files_written_to_disk_are_refused_too(tmp_path):
    path = tmp_path / "report.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    with pytest.raises(FileFormatError, match="password-protected"):
        read_table(path, "report.xlsx")


# ---------------------------------------------------------------------------------------------
# Mapping
# ---------------------------------------------------------------------------------------------


def test_original_columns_are_accepted_as_is():
    mapping = detect_mapping(LOYALIST, "transactions")
    assert mapping.layout == "loyalist"
    assert {f: h for f, h in mapping.items() if f != "phone"} == {h: h for h in LOYALIST if h != "Mobile"}
    assert mapping["phone"] == "Mobile"
    assert missing_required(mapping, "transactions") == []


def test_uci_online_retail_layout():
    mapping = detect_mapping(UCI, "transactions")
    assert mapping.layout == "uci_online_retail"
    assert dict(mapping) == {
        "transaction_id": "InvoiceNo",
        "product_id": "StockCode",
        "product_name": "Description",
        "quantity": "Quantity",
        "purchase_date": "InvoiceDate",
        "price_per_unit": "UnitPrice",
        "customer_id": "CustomerID",
    }


def test_cdnow_layout_needs_no_product_or_transaction_id():
    mapping = detect_mapping(["customer", "date", "quantity", "amount"], "transactions")
    assert mapping.layout == "cdnow"
    assert dict(mapping) == {
        "customer_id": "customer",
        "purchase_date": "date",
        "quantity": "quantity",
        "total_amount": "amount",
    }
    assert missing_required(mapping, "transactions") == []


def test_synonyms_ignore_case_spaces_and_underscores():
    headers = ["Order ID", "Order Date", "SKU", "Item Name", "QTY", "Unit_Price", "Client", "Cell", "Promo Code"]
    mapping = detect_mapping(headers, "transactions")
    assert mapping.layout == "generic"
    assert dict(mapping) == {
        "transaction_id": "Order ID",
        "purchase_date": "Order Date",
        "product_id": "SKU",
        "product_name": "Item Name",
        "quantity": "QTY",
        "price_per_unit": "Unit_Price",
        "customer_id": "Client",
        "phone": "Cell",
        "coupon_code": "Promo Code",
    }


def test_missing_required_columns_are_named():
    mapping = detect_mapping(["date", "qty", "colour"], "transactions")
    assert missing_required(mapping, "transactions") == [
        "price_per_unit or total_amount",
        "transaction_id or customer_id",
        "product_id or product_name",
    ]
    assert missing_required(detect_mapping(["sku", "stock"], "stock"), "stock") == ["total_sold"]
    assert missing_required(detect_mapping(["Name", "Phone"], "customers"), "customers") == ["customer_id"]


def test_stock_and_customer_files_are_mapped():
    stock = detect_mapping(["Product Name", "Initial Stock", "Total Sold", "Price"], "stock")
    assert dict(stock) == {
        "product_name": "Product Name",
        "initial_stock": "Initial Stock",
        "total_sold": "Total Sold",
        "price": "Price",
    }
    customers = detect_mapping(
        ["customer_id", "first_name", "last_name", "Mobile", "E-mail", "SMS consent"], "customers"
    )
    assert dict(customers) == {
        "customer_id": "customer_id",
        "first_name": "first_name",
        "last_name": "last_name",
        "phone": "Mobile",
        "email": "E-mail",
        "sms_consent": "SMS consent",
    }


def test_manager_can_correct_the_mapping():
    headers = ["when", "qty", "paid", "who", "what"]
    mapping = detect_mapping(headers, "transactions")
    fixed = apply_overrides(
        mapping,
        headers,
        {"when": "purchase_date", "paid": "total_amount", "who": "customer_id", "what": "product_name"},
    )
    assert missing_required(fixed, "transactions") == []
    assert fixed["purchase_date"] == "when"
    unmapped = apply_overrides(fixed, headers, {"what": ""})
    assert "product_name" not in unmapped
    with pytest.raises(ValueError, match="no column 'nope'"):
        apply_overrides(mapping, headers, {"nope": "quantity"})
    with pytest.raises(ValueError, match="Unknown field"):
        apply_overrides(mapping, headers, {"qty": "colour"})


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def test_report_lists_row_column_value_and_reason():
    rows = [
        ["C1", "T1", "2026-01-05 10:00:00", "P1", "Mug", "2", "3.50", "7.00", "+12025550142"],
        ["C1", "T1", "yesterday", "P2", "Tea", "1", "2.00", "2.00", ""],
        ["C2", "T2", "2026-01-06 11:00:00", "P1", "Mug", "two", "3.50", "7.00", ""],
        ["C2", "T2", "2026-01-06 11:00:00", "P3", "Jam", "", "4.00", "", ""],
        ["C3", "T3", "2026-01-07 12:00:00", "P1", "Mug", "1", "", "", ""],
        ["C3", "T3", "2026-01-07 12:00:00", "P4", "Cup", "1", "abc", "", "555-1234"],
    ]
    clean, errors = validate(rows, LOYALIST)
    assert clean["source_row"].tolist() == [2]
    assert errors[["row", "column", "value", "reason", "level"]].values.tolist() == [
        [3, "purchase_date", "yesterday", "unparseable date (expected YYYY-MM-DD)", "error"],
        [4, "quantity", "two", "not a number", "error"],
        [5, "quantity", "", "missing required value", "error"],
        [6, "price_per_unit", "", "missing required value (price_per_unit or total_amount)", "error"],
        [7, "price_per_unit", "abc", "not a number", "error"],
        [7, "Mobile", "555-1234", "invalid phone number (line kept without the phone)", "warning"],
    ]


def test_report_uses_the_files_own_column_names():
    _, errors = validate([["536365", "85123A", "X", "6", "12/1/2010 8:26", "-1", "17850", "UK"]], UCI)
    assert errors[["row", "column", "field"]].values.tolist() == [[2, "UnitPrice", "price_per_unit"]]


def test_typed_canonical_rows():
    clean, errors = validate(
        [["00042", "T9", "2026-03-01 09:15:00", "P1", "Blue Mug", "3", "$1,234.50", "", ""]], LOYALIST
    )
    assert errors.empty
    row = clean.iloc[0]
    assert row["customer_id"] == "00042"  # leading zeros survive
    assert row["purchase_date"] == pd.Timestamp("2026-03-01 09:15")
    assert clean["purchase_date"].dtype == "datetime64[ns]"
    assert (row["quantity"], row["price_per_unit"], row["total_amount"]) == (3.0, 1234.5, 3703.5)


def test_price_is_derived_from_total_when_missing():
    clean, _ = validate([["C1", "2026-01-01", "3", "10.00"]], ["customer", "date", "quantity", "amount"])
    assert clean["price_per_unit"].iloc[0] == pytest.approx(3.3333)
    assert clean["total_amount"].iloc[0] == 10.0


def test_customer_id_exported_as_float_loses_its_point_zero():
    clean, _ = validate([["536365", "85123A", "X", "6", "2010-12-01 08:26:00", "2.55", "17850.0", "UK"]], UCI)
    assert clean["customer_id"].iloc[0] == "17850"


def test_lines_without_customer_are_kept_as_anonymous_sales():
    clean, errors = validate([["536365", "85123A", "X", "6", "2010-12-01 08:26:00", "2.55", "", "UK"]], UCI)
    assert errors.empty and len(clean) == 1
    assert pd.isna(clean["customer_id"].iloc[0])


def test_uci_cancellations_become_returns():
    rows = [
        ["C536379", "D", "Discount", "-1", "2010-12-01 09:41:00", "27.50", "14527.0", "UK"],
        ["C536383", "35004C", "LANTERN", "1", "2010-12-01 09:49:00", "4.65", "15311.0", "UK"],
    ]
    clean, errors = validate(rows, UCI)
    assert errors.empty
    assert clean["quantity"].tolist() == [-1.0, -1.0]
    assert clean["total_amount"].tolist() == [-27.5, -4.65]
    assert clean["price_per_unit"].tolist() == [27.5, 4.65]


def test_negative_total_makes_a_return_line():
    clean, _ = validate([["C1", "2026-01-01", "2", "-7.00"]], ["customer", "date", "quantity", "amount"])
    assert (clean["quantity"].iloc[0], clean["total_amount"].iloc[0]) == (-2.0, -7.0)


def test_cdnow_transaction_is_customer_and_date():
    rows = [
        ["00001", "19970101", "1", "11.77"],
        ["00001", "19970101", "2", "5.00"],
        ["00002", "19970112", "5", "77.00"],
    ]
    clean, errors = validate(rows, ["customer", "date", "quantity", "amount"])
    assert errors.empty
    assert clean["transaction_id"].tolist() == ["00001@1997-01-01", "00001@1997-01-01", "00002@1997-01-12"]
    assert (clean["product_id"] == UNKNOWN_PRODUCT).all()
    assert clean["line_no"].tolist() == [1, 2, 1]  # two identical (transaction, product) lines


def test_line_no_counts_identical_lines_across_chunks():
    headers = ["invoice", "date", "sku", "qty", "price", "customer"]
    mapping = detect_mapping(headers, "transactions")
    state = ValidationState()
    first = pd.DataFrame(
        [
            ["A", "2026-01-01", "P1", "1", "2", "C"],
            ["A", "2026-01-01", "P1", "1", "2", "C"],
            ["A", "2026-01-01", "P2", "1", "2", "C"],
        ],
        columns=headers,
        dtype=object,
    )
    second = pd.DataFrame(
        [["A", "2026-01-01", "P1", "1", "2", "C"], ["B", "2026-01-01", "P1", "1", "2", "C"]],
        columns=headers,
        dtype=object,
    )
    c1, _ = validate_chunk(first, mapping, "transactions", start_row=2, state=state)
    c2, _ = validate_chunk(second, mapping, "transactions", start_row=5, state=state)
    assert c1["line_no"].tolist() == [1, 2, 1]
    assert c2["line_no"].tolist() == [3, 1]
    assert c2["source_row"].tolist() == [5, 6]


def test_a_bad_row_keeps_its_line_number_so_a_fixed_reimport_matches():
    rows = [
        ["A", "2026-01-01", "P1", "1", "2"],
        ["A", "2026-01-01", "P1", "x", "2"],
        ["A", "2026-01-01", "P1", "1", "2"],
    ]
    clean, errors = validate(rows, ["invoice", "date", "sku", "qty", "price"])
    assert errors["row"].tolist() == [3]
    assert clean["line_no"].tolist() == [1, 3]


@pytest.mark.parametrize(
    "values, region, expected",
    [
        (["03/04/2026 10:00", "12/25/2026 09:30"], "US", ["2026-03-04 10:00", "2026-12-25 09:30"]),
        (["03/04/2026", "25/12/2026"], "US", ["2026-04-03", "2026-12-25"]),  # a day > 12 settles it
        (["03/04/2026", "05/06/2026"], "GB", ["2026-04-03", "2026-06-05"]),  # ambiguous: the region decides
        (["12/1/2010 8:26", "1/13/2011 14:05"], "US", ["2010-12-01 08:26", "2011-01-13 14:05"]),  # UCI original
        (["2026-01-05T10:00:00+02:00", "2026-01-05"], "US", ["2026-01-05 10:00", "2026-01-05"]),
        (["19970101", "19970225"], "US", ["1997-01-01", "1997-02-25"]),
        (["05.01.2026 10:00", "31.12.2025"], "DE", ["2026-01-05 10:00", "2025-12-31"]),
    ],
)
def test_date_formats(values, region, expected):
    rows = [["C1", v, "1", "1.00"] for v in values]
    clean, errors = validate(rows, ["customer", "date", "quantity", "amount"], default_region=region)
    assert errors.empty
    assert clean["purchase_date"].tolist() == [pd.Timestamp(e) for e in expected]


def test_date_format_chosen_on_the_first_chunk_holds_for_the_file():
    headers = ["customer", "date", "quantity", "amount"]
    mapping = detect_mapping(headers, "transactions")
    state = ValidationState()
    first = pd.DataFrame([["C1", "25/12/2026", "1", "1"]], columns=headers, dtype=object)
    later = pd.DataFrame(
        [["C1", "03/04/2026", "1", "1"], ["C1", "2026-04-03", "1", "1"]], columns=headers, dtype=object
    )
    validate_chunk(first, mapping, "transactions", start_row=2, state=state)
    clean, errors = validate_chunk(later, mapping, "transactions", start_row=3, state=state)
    assert clean["purchase_date"].tolist() == [pd.Timestamp("2026-04-03")]
    assert errors[["row", "reason"]].values.tolist() == [[4, "unparseable date (expected DD/MM/YYYY)"]]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("1,234.50", 1234.5),
        ("$12.00", 12.0),
        ("€ 3", 3.0),
        ("(2.50)", -2.5),
        (" 7 ", 7.0),
        ("1e3", 1000.0),
    ],
)
def test_amounts_with_symbols_and_separators(raw, expected):
    clean, errors = validate([["C1", "2026-01-01", "1", raw]], ["customer", "date", "quantity", "amount"])
    assert errors.empty
    assert clean["total_amount"].iloc[0] == expected


def test_decimal_comma_column():
    rows = [["C1", "2026-01-01", "1", "3,50"], ["C1", "2026-01-01", "1", "1.234,56"], ["C1", "2026-01-01", "1", "12"]]
    clean, _ = validate(rows, ["customer", "date", "quantity", "amount"])
    assert clean["total_amount"].tolist() == [3.5, 1234.56, 12.0]


@pytest.mark.parametrize(
    "raw, region, expected",
    [
        ("(202) 555-0142", "US", "+12025550142"),
        ("202.555.0142", "US", "+12025550142"),
        ("12025550142.0", "US", "+12025550142"),
        ("+1 415 555 0150", "GB", "+14155550150"),
        ("020 7946 0321", "GB", "+442079460321"),
    ],
)
def test_phones_become_e164_with_the_store_region(raw, region, expected):
    clean, errors = validate(
        [["C1", "Ann", raw]], ["customer_id", "name", "phone"], kind="customers", default_region=region
    )
    assert errors.empty
    assert clean["phone"].iloc[0] == expected


def test_invalid_phone_refuses_a_customer_row_but_not_a_purchase():
    customers, errors = validate(
        [["C1", "Ann", "+44 7700 900123"], ["C2", "Bob", "+1 202 555 0142"]],
        ["customer_id", "name", "phone"],
        kind="customers",
    )
    assert customers["customer_id"].tolist() == ["C2"]
    assert customers["phone_type"].tolist() == ["fixed_line_or_mobile"]
    assert errors[["row", "column", "reason", "level"]].values.tolist() == [
        [2, "phone", "invalid phone number (region US)", "error"]
    ]
    lines, report = validate([["C1", "T1", "2026-01-01", "P1", "Mug", "1", "2", "2", "+44 7700 900123"]], LOYALIST)
    assert len(lines) == 1 and lines["phone"].isna().all()
    assert report["level"].tolist() == ["warning"]


def test_customers_file_names_consent_and_email():
    headers = ["customer_id", "first_name", "last_name", "phone", "email", "sms_consent", "sms_consent_date"]
    rows = [
        ["C1", "Ann", "Lee", "2025550142", "ann@example.com", "Yes", "2026-01-02"],
        ["C2", "Bob", "", "", "not-an-email", "no", ""],
        ["C3", "", "", "", "", "", ""],
        ["C4", "Cy", "Ng", "", "", "maybe", ""],
        ["", "Dee", "", "", "", "", ""],
    ]
    clean, errors = validate(rows, headers, kind="customers")
    assert clean["customer_id"].tolist() == ["C1", "C2", "C3"]
    assert clean["name"].tolist()[:2] == ["Ann Lee", "Bob"] and pd.isna(clean["name"].iloc[2])
    assert clean["sms_consent"].tolist()[:2] == ["yes", "no"] and pd.isna(clean["sms_consent"].iloc[2])
    assert clean["sms_consent_date"].iloc[0] == pd.Timestamp("2026-01-02")
    assert pd.isna(clean["email"].iloc[1])
    assert errors[["row", "column", "reason", "level"]].values.tolist() == [
        [3, "email", "invalid email address (customer kept without it)", "warning"],
        [5, "sms_consent", "sms_consent must be yes or no", "error"],
        [6, "customer_id", "missing required value", "error"],
    ]


def test_stock_file_validation():
    headers = ["product_name", "initial_stock", "total_sold", "price"]
    rows = [["Blue Mug", "100", "40", "12.99"], ["", "10", "1", ""], ["Jam", "-5", "1", "3"], ["Tea", "ten", "1", "3"]]
    clean, errors = validate(rows, headers, kind="stock")
    assert clean[["product_id", "initial_stock", "total_sold", "price"]].values.tolist() == [
        ["Blue Mug", 100, 40, 12.99]
    ]
    assert errors[["row", "reason"]].values.tolist() == [
        [3, "missing required value (product)"],
        [4, "negative value"],
        [5, "not a number"],
    ]


def test_every_row_is_either_clean_or_reported():
    rng = np.random.default_rng(0)
    good = ["C1", "T1", "2026-01-05 10:00:00", "P1", "Mug", "2", "3.50", "7.00", ""]
    bad_values = {"purchase_date": "nope", "quantity": "x", "price_per_unit": "?", "product_id": ""}
    rows = []
    for _ in range(200):
        row = list(good)
        if rng.random() < 0.3:
            col = list(bad_values)[rng.integers(0, 4)]
            row[LOYALIST.index(col)] = bad_values[col]
            if col == "product_id":
                row[LOYALIST.index("product_name")] = ""
        rows.append(row)
    clean, errors = validate(rows, LOYALIST)
    bad_rows = set(errors.loc[errors["level"] == "error", "row"])
    assert len(clean) + len(bad_rows) == 200
    assert not bad_rows & set(clean["source_row"])


def test_importing_columns_does_not_import_flask():
    code = "import sys, preprocessing.columns, preprocessing.synthetic; print('flask' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_uci_online_retail_end_to_end():
    path = SHARED_DATA / "online_retail_uci.csv.gz"
    if not path.exists():
        pytest.skip("../shared/data/online_retail_uci.csv.gz is not available")
    clean_parts, error_parts = [], []
    state = ValidationState()
    with read_table(path, path.name) as reader:
        mapping = detect_mapping(reader.headers, "transactions")
        assert mapping.layout == "uci_online_retail"
        assert missing_required(mapping, "transactions") == []
        for chunk in reader:
            clean, errors = validate_chunk(chunk, mapping, "transactions", default_region="GB", state=state)
            clean_parts.append(clean)
            error_parts.append(errors)
    clean, errors = pd.concat(clean_parts), pd.concat(error_parts)
    bad_rows = errors.loc[errors["level"] == "error", "row"].unique()
    assert len(clean) + len(bad_rows) == 541_909
    # The two "Adjust bad debt" lines (A563186/7) have a negative unit price: refused, not imported.
    assert len(bad_rows) == 2 and set(errors["reason"]) == {"negative price (returns need a negative quantity)"}
    anonymous_clean = int(clean["customer_id"].isna().sum())
    assert anonymous_clean == 135_078 and anonymous_clean + len(bad_rows) == 135_080
    assert clean["transaction_id"].nunique() == 25_900 - 2
    assert (clean["quantity"] < 0).sum() == 10_624
    assert (clean.loc[clean["transaction_id"].str.startswith("C"), "quantity"] < 0).all()
    assert clean["purchase_date"].min() == pd.Timestamp("2010-12-01 08:26")
    assert clean.duplicated(["transaction_id", "product_id", "line_no"]).sum() == 0
