"""Reading uploaded purchase / stock / customer files and mapping their columns — no database.

Three steps, each usable on its own (the importer service strings them together):

1. ``read_table(source, filename)`` opens a CSV (any of ``, ; TAB |``, UTF-8 with or without BOM,
   UTF-16 with BOM, else Windows-1252 / Latin-1), a gzip-compressed CSV, or an XLSX workbook (first
   sheet), decides the format from the bytes (never from the file name), and yields chunks of
   **text** (every cell a ``str``; ``+1 202…`` and ``00042`` survive). Anything that cannot be read
   raises ``FileFormatError`` with a message meant for the store manager.
2. ``detect_mapping(headers, kind)`` maps the file's headers onto our fields (the original system's
   columns, UCI Online Retail, CDNOW-style, or synonyms); ``missing_required`` names what is missing.
3. ``validate_chunk(chunk, mapping, kind)`` turns a text chunk into typed canonical rows plus a
   row-level report (row, column, value, reason).

Row numbers everywhere are 1-based and count the header as row 1, so "row 7" is the 7th row the
user sees in a spreadsheet (for CSV: the 7th record; it equals the file line unless a quoted value
contains a line break; for XLSX: the sheet's own row number).
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import BinaryIO, Iterator

import numpy as np
import pandas as pd
import phonenumbers

KINDS = ("transactions", "stock", "customers")
MAX_COLUMNS = 500
FIELD_SIZE_LIMIT = 131_072  # characters in one value; the csv module's default field_size_limit
SAMPLE_BYTES = 1 << 20
UNKNOWN_PRODUCT = "UNKNOWN"  # product_id for layouts without products (CDNOW-style)

_MAGIC_GZIP = b"\x1f\x8b"
_MAGIC_ZIP = b"PK\x03\x04"
_MAGIC_ZIP_EMPTY = b"PK\x05\x06"
_MAGIC_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_DELIMITERS = ",;\t|"
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


class FileFormatError(ValueError):
    """A file that cannot be read as a table; ``message`` is meant for the person who uploaded it."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_table(source, filename: str = "", chunksize: int = 100_000) -> "TableReader":
    """Open an uploaded CSV / CSV.GZ / XLSX as text chunks, detecting format, delimiter and encoding.

    Args:
        source: a path, or a binary file-like object (seekable or not; a non-seekable stream is
            spooled to a temporary file first).
        filename: the name the user gave the file; only used in messages.
        chunksize: rows per chunk yielded by iterating the reader.
    Returns:
        A ``TableReader`` (use it as a context manager, or call ``close()``).
    Raises:
        FileFormatError: empty file, binary data, encrypted or corrupt workbook, no header row,
            duplicated or too many columns, a value over ``FIELD_SIZE_LIMIT`` characters.
    """
    return TableReader(source, filename, chunksize)


class TableReader:
    """An opened table: ``headers``, how it was read (``describe()``), and chunks by iteration.

    Each chunk is a DataFrame with the file's headers as columns (object dtype, every cell a ``str``,
    '' when empty) and the 1-based row number (header = row 1) as index; rows that are entirely empty
    are dropped (their numbers are skipped). A file with a header and no rows yields no chunk.
    Iterating again starts from the top, so a preview can be taken before the import. Problems found
    only while reading on (a ragged row, a damaged archive) raise ``FileFormatError`` from the loop.
    """

    def __init__(self, source, filename: str = "", chunksize: int = 100_000):
        self.filename = filename or getattr(source, "name", "") or "upload"
        self.chunksize = int(chunksize)
        self.format = "csv"
        self.compression: str | None = None
        self.encoding: str | None = None
        self.delimiter: str | None = None
        self.sheet_name: str | None = None
        self.sheet_names: list[str] = []
        self.headers: list[str] = []
        self._owned: list = []
        self._workbook = None
        self._header_row = 1
        try:
            self._raw = self._open(source)
            self._detect()
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            self.close()
            if self.compression is None:
                raise
            raise FileFormatError("The file looks gzip-compressed but is damaged or cut short; compress it again "
                                  "or upload the plain CSV.") from exc
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------------
    def _open(self, source) -> BinaryIO:
        if isinstance(source, (str, os.PathLike)):
            try:
                fh = open(source, "rb")
            except OSError as exc:
                raise FileFormatError(f"The file {self.filename!r} could not be opened ({exc.strerror}).") from exc
            self._owned.append(fh)
        else:
            fh = source
            if not (hasattr(fh, "seekable") and fh.seekable()):
                spool = tempfile.SpooledTemporaryFile(max_size=32 << 20)
                shutil.copyfileobj(fh, spool)
                self._owned.append(spool)
                fh = spool
        fh.seek(0)
        if fh.read(2) == _MAGIC_GZIP:
            fh.seek(0)
            gz = gzip.GzipFile(fileobj=fh, mode="rb")
            self._owned.append(gz)
            try:
                gz.read(1)
            except (OSError, EOFError) as exc:
                raise FileFormatError("The file looks gzip-compressed but is damaged; compress it again "
                                      "or upload the plain CSV.") from exc
            self.compression = "gzip"
            fh = gz
        fh.seek(0)
        return fh

    def _detect(self) -> None:
        head = self._raw.read(8)
        self._raw.seek(0)
        if not head.strip():
            rest = self._raw.read(SAMPLE_BYTES)
            self._raw.seek(0)
            if not rest.strip():
                raise FileFormatError("The file is empty.")
        if head.startswith(_MAGIC_OLE2):
            raise FileFormatError(
                "This is a password-protected (encrypted) Excel workbook or an old .xls file. "
                "Remove the password or save it as .xlsx (or CSV) and upload it again."
            )
        if head.startswith(_MAGIC_ZIP) or head.startswith(_MAGIC_ZIP_EMPTY):
            self.format = "xlsx"
            self._open_workbook()
        else:
            self._open_csv()
        self.headers = _check_headers(self.headers)

    # -- XLSX ------------------------------------------------------------------------------------
    def _open_workbook(self) -> None:
        import openpyxl
        from openpyxl.utils.exceptions import InvalidFileException

        try:
            self._workbook = openpyxl.load_workbook(self._raw, read_only=True, data_only=True)
        except zipfile.BadZipFile as exc:
            raise FileFormatError("The Excel file is damaged (not a readable .xlsx archive). "
                                  "Save it again from Excel and re-upload.") from exc
        except (KeyError, InvalidFileException, ValueError, OSError, EOFError) as exc:
            raise FileFormatError("This is a zip archive but not an Excel .xlsx workbook. "
                                  "Upload the .xlsx or a CSV file.") from exc
        sheets = self._workbook.worksheets
        if not sheets:
            raise FileFormatError("The workbook has no worksheet.")
        self.sheet_names = [ws.title for ws in sheets]
        self._sheet = sheets[0]
        self.sheet_name = self._sheet.title
        for number, values in enumerate(self._sheet.iter_rows(values_only=True), start=1):
            cells = [_cell_text(v) for v in values]
            if any(c.strip() for c in cells):
                while cells and not cells[-1].strip():
                    cells.pop()
                self.headers, self._header_row = cells, number
                return
            if number > 1000:
                break
        raise FileFormatError(f"The first sheet ({self.sheet_name!r}) is empty.")

    def _iter_xlsx(self) -> Iterator[pd.DataFrame]:
        width = len(self.headers)
        rows: list[list[str]] = []
        numbers: list[int] = []
        for number, values in enumerate(self._sheet.iter_rows(min_row=self._header_row + 1, values_only=True),
                                        start=self._header_row + 1):
            # openpyxl yields rows one by one; converting its cell objects is unavoidable here.
            cells = [_cell_text(v) for v in values[:width]]
            if not any(cells):
                continue
            cells.extend([""] * (width - len(cells)))
            rows.append(cells)
            numbers.append(number)
            if len(rows) >= self.chunksize:
                yield self._frame(rows, numbers)
                rows, numbers = [], []
        if rows:
            yield self._frame(rows, numbers)

    def _frame(self, rows, numbers) -> pd.DataFrame:
        # Excel caps a cell at 32,767 characters, so no field-size check is needed here.
        return pd.DataFrame(rows, columns=self.headers, index=pd.Index(numbers, name="row"), dtype=object)

    # -- CSV -------------------------------------------------------------------------------------
    def _open_csv(self) -> None:
        self.encoding, self._long_lines = _detect_encoding(self._raw)
        self._raw.seek(0)
        raw_sample = self._raw.read(SAMPLE_BYTES)
        more = bool(self._raw.read(1))
        self._raw.seek(0)
        text = raw_sample.decode(self.encoding, errors="ignore")
        if more:
            cut = max(text.rfind("\n"), text.rfind("\r"))
            if cut < 0:
                raise FileFormatError(
                    f"The first line is longer than {SAMPLE_BYTES:,} bytes; this is not a CSV table "
                    f"(or a value exceeds the {FIELD_SIZE_LIMIT:,}-character limit)."
                )
            text = text[:cut]
        text = text.lstrip("\ufeff")
        if not text.strip():
            raise FileFormatError("The file is empty.")
        if sum(ch < " " and ch not in "\t\r\n" for ch in text[:65536]) > max(8, len(text[:65536]) // 100):
            raise FileFormatError("This does not look like a CSV or Excel file (it contains binary data).")
        self.delimiter = _sniff_delimiter(text)
        try:
            first = next(csv.reader(io.StringIO(text), delimiter=self.delimiter), [])
        except csv.Error as exc:
            raise _field_error(exc) from exc
        self.headers = first

    def _iter_csv(self) -> Iterator[pd.DataFrame]:
        self._raw.seek(0)
        encoding = "utf-8-sig" if self.encoding in ("utf-8", "utf-8-sig") else self.encoding
        start = 2
        try:
            reader = pd.read_csv(
                _KeepOpen(self._raw), sep=self.delimiter, header=0, dtype=object, keep_default_na=False,
                na_filter=False, skip_blank_lines=False, chunksize=self.chunksize, encoding=encoding, engine="c",
                quotechar='"', on_bad_lines="error",
            )
            for chunk in reader:
                if chunk.shape[1] != len(self.headers):
                    raise FileFormatError("The rows do not have the same number of columns as the header.")
                chunk.columns = self.headers
                chunk.index = pd.RangeIndex(start, start + len(chunk), name="row")
                start += len(chunk)
                chunk = chunk.fillna("")
                first_empty = chunk.iloc[:, 0].eq("")
                if first_empty.any():
                    blank_rows = (chunk[first_empty] == "").all(axis=1)
                    chunk = chunk.drop(index=blank_rows.index[blank_rows])
                if self._long_lines:
                    _check_field_sizes(chunk)
                if len(chunk):
                    yield chunk
        except pd.errors.ParserError as exc:
            raise _parser_error(exc, len(self.headers)) from exc
        except UnicodeDecodeError as exc:
            raise FileFormatError(f"The file is not valid {self.encoding} text; "
                                  "save it as UTF-8 CSV and upload it again.") from exc
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise FileFormatError("The compressed file is damaged or cut short; compress it again or upload the "
                                  "plain CSV.") from exc

    # -- public ----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[pd.DataFrame]:
        return self._iter_xlsx() if self.format == "xlsx" else self._iter_csv()

    def preview(self, n: int = 20) -> pd.DataFrame:
        """The first ``n`` data rows (text), for showing the detected mapping before importing."""
        for chunk in self:
            return chunk.head(n)
        return pd.DataFrame(columns=self.headers, dtype=str)

    def describe(self) -> str:
        """One sentence saying how the file was read (format, encoding, delimiter or sheet)."""
        if self.format == "xlsx":
            if len(self.sheet_names) > 1:
                others = ", ".join(repr(s) for s in self.sheet_names[1:])
                return f"Excel workbook: read the first sheet {self.sheet_name!r} (ignored: {others})."
            return f"Excel workbook: read sheet {self.sheet_name!r}."
        enc = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM", "utf-16": "UTF-16", "cp1252": "Windows-1252",
               "latin-1": "Latin-1"}.get(self.encoding or "", self.encoding)
        gz = " (gzip-compressed)" if self.compression else ""
        return f"CSV{gz}, {enc}, {_DELIMITER_NAMES.get(self.delimiter or ',', self.delimiter)}-separated."

    def close(self) -> None:
        """Release the workbook and any file this reader opened itself."""
        if self._workbook is not None:
            self._workbook.close()
            self._workbook = None
        for fh in reversed(self._owned):
            fh.close()
        self._owned = []

    def __enter__(self) -> "TableReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _KeepOpen(io.RawIOBase):
    """A read-only view that pandas may close without closing our file (so it can be read again)."""

    def __init__(self, inner: BinaryIO):
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _detect_encoding(fh: BinaryIO) -> tuple[str, bool]:
    """(encoding, has a line longer than FIELD_SIZE_LIMIT) from one pass over the whole stream.

    UTF-8 (with or without BOM) when every byte decodes, UTF-16 by its BOM, else Windows-1252 when
    it uses that code page's 0x80-0x9F characters, else Latin-1.
    """
    fh.seek(0)
    head = fh.read(4)
    if head.startswith(codecs.BOM_UTF8):
        name = "utf-8-sig"
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", True
    else:
        name = "utf-8"
    fh.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    first = True
    high_c1 = False
    undefined_1252 = False
    ok = True
    long_lines = False
    tail = 0
    while block := fh.read(SAMPLE_BYTES):
        lines = block.split(b"\n")
        long_lines = long_lines or tail + len(lines[0]) > FIELD_SIZE_LIMIT or max(map(len, lines)) > FIELD_SIZE_LIMIT
        tail = len(lines[-1]) if len(lines) > 1 else tail + len(lines[-1])
        if first and b"\x00" in block:
            raise FileFormatError("This does not look like a CSV or Excel file (it contains binary data).")
        first = False
        if ok:
            try:
                decoder.decode(block)
            except UnicodeDecodeError:
                ok = False
        if not ok:
            high_c1 = high_c1 or any(bytes([b]) in block for b in range(0x80, 0xA0))
            undefined_1252 = undefined_1252 or any(bytes([b]) in block for b in (0x81, 0x8D, 0x8F, 0x90, 0x9D))
    if ok:
        try:
            decoder.decode(b"", final=True)
            return name, long_lines
        except UnicodeDecodeError:
            pass
    # Not UTF-8. Windows-1252 and Latin-1 agree outside 0x80-0x9F; name the one that applies.
    if high_c1 and not undefined_1252:
        return "cp1252", long_lines
    return "latin-1", long_lines


def _sniff_delimiter(text: str) -> str:
    """csv.Sniffer on the sample, kept only if it splits the rows consistently; else the best candidate."""
    sample = text[:65536]
    scores = {d: _split_score(sample, d) for d in _DELIMITERS}
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        sniffed = None
    if sniffed in scores and scores[sniffed][1] >= 2 and scores[sniffed][0] >= 0.9:
        return sniffed
    best = max(_DELIMITERS, key=lambda d: scores[d])
    return best if scores[best][1] >= 2 else ","


def _split_score(sample: str, delimiter: str) -> tuple[float, int]:
    """(share of the first rows with the header's field count, header field count)."""
    try:
        rows = [r for _, r in zip(range(50), csv.reader(io.StringIO(sample), delimiter=delimiter))]
    except csv.Error:
        return (0.0, 0)
    rows = [r for r in rows if r]
    if not rows:
        return (0.0, 0)
    width = len(rows[0])
    if width < 2:
        return (0.0, width)
    body = rows[1:] or rows
    return (sum(len(r) == width for r in body) / len(body), width)


def _check_headers(headers: list[str]) -> list[str]:
    """Clean header names and refuse headers that cannot be mapped reliably."""
    cleaned = [str(h).replace("\ufeff", "").strip() for h in headers]
    if not any(cleaned):
        raise FileFormatError("The file has no header row (the first row is empty).")
    if len(cleaned) > MAX_COLUMNS:
        raise FileFormatError(f"The file has {len(cleaned):,} columns; at most {MAX_COLUMNS} are supported.")
    named = [h for h in cleaned if h]
    if all(re.fullmatch(r"[\d\s.,:/+\-]+", h) for h in named):
        raise FileFormatError(
            "The first row holds values, not column names. Add a header row naming the columns "
            "(for example: customer_id, purchase_date, quantity, total_amount)."
        )
    seen: dict[str, str] = {}
    dupes: list[str] = []
    for h in named:
        key = h.casefold()
        if key in seen and h not in dupes:
            dupes.append(h)
        seen.setdefault(key, h)
    if dupes:
        raise FileFormatError("These column names appear more than once: " + ", ".join(repr(d) for d in dupes)
                              + ". Rename or remove the duplicates.")
    return [h or f"column_{i + 1}" for i, h in enumerate(cleaned)]


def _check_field_sizes(chunk: pd.DataFrame) -> None:
    for col in chunk.columns:
        lengths = chunk[col].str.len()
        if len(lengths) and lengths.max() > FIELD_SIZE_LIMIT:
            row = lengths.idxmax()
            raise FileFormatError(
                f"Row {row}, column {col!r} holds {int(lengths.max()):,} characters; the limit for one "
                f"value is {FIELD_SIZE_LIMIT:,}. Check the quoting or the delimiter."
            )


def _field_error(exc: Exception) -> FileFormatError:
    return FileFormatError(f"A value in the first rows is longer than {FIELD_SIZE_LIMIT:,} characters "
                           f"(or a quote is never closed): {exc}.")


def _parser_error(exc: Exception, width: int) -> FileFormatError:
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if m:
        return FileFormatError(f"Row {m.group(2)} has {m.group(3)} values but the header has {width} columns. "
                               "Check the delimiter and that values containing it are quoted.")
    if "out of memory" in str(exc) or "field larger" in str(exc):
        return _field_error(exc)
    return FileFormatError(f"The CSV could not be parsed: {exc}")


def _cell_text(value) -> str:
    """One spreadsheet cell as text: ISO dates, integers without '.0', floats by repr."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        if value.time() == time(0):
            return value.strftime("%Y-%m-%d")
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


# --------------------------------------------------------------------------------------------
# Mapping
# --------------------------------------------------------------------------------------------

# Our fields per kind, in the order they are matched (earlier fields claim ambiguous headers first).
# Synonyms are compared after lower-casing and removing spaces, underscores, hyphens, dots and '#'.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "transactions": {
        "transaction_id": ("transactionid", "invoiceno", "invoice", "invoiceid", "invoicenumber", "orderid", "order",
                           "orderno", "ordernumber", "receipt", "receiptno", "receiptid", "receiptnumber", "basketid",
                           "ticket", "ticketid", "txnid", "saleid", "transaction"),
        "customer_id": ("customerid", "customer", "client", "clientid", "memberid", "member", "customerno",
                        "customernumber", "custid", "loyaltyid", "loyaltynumber", "accountid"),
        "purchase_date": ("purchasedate", "date", "orderdate", "invoicedate", "transactiondate", "timestamp",
                          "datetime", "saledate", "purchasetime", "purchasedat", "createdat", "time"),
        "product_id": ("productid", "sku", "itemcode", "stockcode", "productcode", "itemid", "articleid",
                       "articleno", "barcode", "ean", "upc", "itemno", "itemnumber"),
        "product_name": ("productname", "description", "product", "itemname", "itemdescription", "item", "article",
                         "productdescription", "title", "name"),
        "quantity": ("quantity", "qty", "units", "unitssold", "quantitysold", "pieces"),
        "price_per_unit": ("priceperunit", "unitprice", "price", "itemprice", "priceeach", "sellingprice"),
        "total_amount": ("totalamount", "amount", "total", "linetotal", "lineamount", "totalprice", "sales",
                         "revenue", "value", "linevalue", "netamount"),
        "phone": ("mobile", "phone", "cell", "phonenumber", "mobilenumber", "mobilephone", "cellphone", "msisdn",
                  "tel", "telephone"),
        "store": ("store", "storename", "shop", "branch", "location", "storeid", "outlet"),
        "coupon_code": ("couponcode", "coupon", "promocode", "promo", "voucher", "vouchercode", "discountcode"),
    },
    "stock": {
        "product_id": ("productid", "sku", "itemcode", "stockcode", "productcode", "itemid", "articleid", "barcode",
                       "ean", "upc"),
        "product_name": ("productname", "description", "product", "itemname", "item", "name", "title"),
        "initial_stock": ("initialstock", "openingstock", "stockreceived", "received", "quantityreceived",
                          "purchasedqty", "stockin", "initialquantity", "stock"),
        "total_sold": ("totalsold", "sold", "unitssold", "qtysold", "quantitysold", "sales"),
        "price": ("price", "unitprice", "priceperunit", "sellingprice", "retailprice"),
        "store": ("store", "storename", "shop", "branch", "location", "storeid"),
    },
    "customers": {
        "customer_id": ("customerid", "customer", "client", "clientid", "memberid", "member", "customerno",
                        "customernumber", "custid", "loyaltyid", "id"),
        "name": ("name", "fullname", "customername", "clientname"),
        "first_name": ("firstname", "givenname", "forename", "first"),
        "last_name": ("lastname", "surname", "familyname", "last"),
        "phone": ("phone", "mobile", "cell", "phonenumber", "mobilenumber", "mobilephone", "cellphone", "msisdn",
                  "tel", "telephone"),
        "email": ("email", "emailaddress", "mail", "email1"),
        "store": ("store", "storename", "shop", "branch", "homestore", "location", "storeid"),
        "sms_consent": ("smsconsent", "smsoptin", "consent", "optin", "marketingconsent", "smsmarketing"),
        "sms_consent_date": ("smsconsentdate", "consentdate", "optindate", "smsoptindate", "consentedat"),
    },
}

# Named layouts: the normalised headers that must all be present.
LAYOUTS: dict[str, tuple[str, frozenset[str]]] = {
    "loyalist": ("transactions", frozenset({"customerid", "transactionid", "purchasedate", "productid", "productname",
                                            "quantity", "priceperunit", "totalamount"})),
    "uci_online_retail": ("transactions", frozenset({"invoiceno", "stockcode", "description", "quantity",
                                                     "invoicedate", "unitprice", "customerid"})),
    "cdnow": ("transactions", frozenset({"customer", "date", "quantity", "amount"})),
}

# Required fields: each entry is a set of alternatives, one of which must be mapped.
REQUIRED: dict[str, list[tuple[str, ...]]] = {
    "transactions": [("purchase_date",), ("quantity",), ("price_per_unit", "total_amount"),
                     ("transaction_id", "customer_id")],
    "stock": [("product_id", "product_name"), ("initial_stock",), ("total_sold",)],
    "customers": [("customer_id",)],
}


class Mapping(dict):
    """Our field -> the file's header, plus the ``kind`` and the detected ``layout`` name."""

    def __init__(self, fields: dict[str, str] | None = None, kind: str = "transactions", layout: str = "generic"):
        super().__init__(fields or {})
        self.kind = kind
        self.layout = layout

    def __repr__(self) -> str:
        return f"Mapping({dict(self)!r}, kind={self.kind!r}, layout={self.layout!r})"


def _norm(header: str) -> str:
    return re.sub(r"[\s_\-.#/]+", "", str(header).casefold())


def detect_mapping(headers: list[str], kind: str) -> Mapping:
    """Map a file's headers onto our fields by layout, then exact name, then synonyms.

    Matching ignores case, spaces, underscores, hyphens and dots; each header is used once.
    The layout is 'loyalist', 'uci_online_retail', 'cdnow' or 'generic'.
    """
    if kind not in SYNONYMS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    normalised = {}
    for h in headers:
        normalised.setdefault(_norm(h), h)
    layout = "generic"
    for name, (layout_kind, needed) in LAYOUTS.items():
        if layout_kind == kind and needed <= normalised.keys():
            layout = name
            break
    fields: dict[str, str] = {}
    used: set[str] = set()
    for target, synonyms in SYNONYMS[kind].items():
        for candidate in (_norm(target), *synonyms):
            header = normalised.get(candidate)
            if header is not None and header not in used:
                fields[target] = header
                used.add(header)
                break
    return Mapping(fields, kind=kind, layout=layout)


def missing_required(mapping: dict, kind: str) -> list[str]:
    """Names of required fields (or alternatives, 'a or b') that the mapping lacks; empty when complete.

    For transactions a product column is required unless ``total_amount`` is mapped (CDNOW-style
    files have no product: their lines get product_id 'UNKNOWN').
    """
    missing = [" or ".join(alts) for alts in REQUIRED[kind] if not any(a in mapping for a in alts)]
    if kind == "transactions" and not ({"product_id", "product_name", "total_amount"} & mapping.keys()):
        missing.append("product_id or product_name")
    return missing


def apply_overrides(mapping: Mapping, headers: list[str], overrides: dict[str, str]) -> Mapping:
    """A copy of ``mapping`` corrected by the manager: {source header: field}; field '' unmaps the header.

    Raises:
        ValueError: an unknown header or field (the message names it).
    """
    fields = dict(mapping)
    known = SYNONYMS[mapping.kind]
    for source, target in overrides.items():
        if source not in headers:
            raise ValueError(f"The file has no column {source!r}.")
        fields = {f: s for f, s in fields.items() if s != source}
        if target:
            if target not in known:
                raise ValueError(f"Unknown field {target!r}; expected one of: {', '.join(known)}.")
            fields[target] = source
    return Mapping(fields, kind=mapping.kind, layout=mapping.layout)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

ERROR_COLUMNS = ["row", "column", "field", "value", "reason", "level"]
TRANSACTION_COLUMNS = ["customer_id", "transaction_id", "purchase_date", "product_id", "product_name", "quantity",
                       "price_per_unit", "total_amount", "phone", "store", "coupon_code", "line_no", "source_row"]
STOCK_COLUMNS = ["product_id", "product_name", "initial_stock", "total_sold", "price", "store", "source_row"]
CUSTOMER_COLUMNS = ["customer_id", "name", "first_name", "last_name", "phone", "phone_type", "email", "store",
                    "sms_consent", "sms_consent_date", "source_row"]

# Date formats are tried per column as families (a family also accepts its date-only / seconds variants).
_DATE_FAMILIES: dict[str, tuple[str, ...]] = {
    "YYYY-MM-DD": ("ISO8601",),
    "MM/DD/YYYY": ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %I:%M:%S %p"),
    "DD/MM/YYYY": ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y"),
    "DD.MM.YYYY": ("%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y"),
    "DD-MM-YYYY": ("%d-%m-%Y %H:%M", "%d-%m-%Y %H:%M:%S", "%d-%m-%Y"),
    "MM/DD/YY": ("%m/%d/%y %H:%M", "%m/%d/%y"),
    "DD/MM/YY": ("%d/%m/%y %H:%M", "%d/%m/%y"),
    "YYYYMMDD": ("%Y%m%d",),
}
_MONTH_FIRST_REGIONS = {"US", "PH", "FM", "MH", "PW", "GU", "AS", "MP", "PR", "VI", "UM"}
_DATE_MIN, _DATE_MAX = pd.Timestamp("1900-01-01"), pd.Timestamp("2100-12-31")
_CONSENT = {"yes": "yes", "y": "yes", "true": "yes", "1": "yes", "x": "yes", "optin": "yes", "optedin": "yes",
            "subscribed": "yes", "no": "no", "n": "no", "false": "no", "0": "no", "optout": "no", "optedout": "no",
            "unsubscribed": "no"}
_UNSTRIPPED = {"quantity", "price_per_unit", "total_amount", "purchase_date", "initial_stock", "total_sold", "price"}
_EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"
_AMOUNT_NOISE = r"[\s\u00a0$€£¥]|^(?:USD|EUR|GBP)|(?:USD|EUR|GBP)$"  # stripped before parsing amounts


@dataclass
class ValidationState:
    """What one chunk decides for the next ones of the same file; pass one instance, chunks in file order.

    date_formats: field -> date family chosen on the first chunk where one parses >= 95 % of values.
    decimal_comma: field -> whether ',' is the decimal mark (decided when a chunk first shows it).
    line_counts: identical (transaction_id, product_id) lines seen so far, keyed by a 64-bit hash, so
        ``line_no`` continues across chunks (about 40 bytes per distinct key).
    phone_cache: raw phone text -> (E.164 or None, number type), to call phonenumbers once per value.
    """

    date_formats: dict[str, str] = field(default_factory=dict)
    decimal_comma: dict[str, bool] = field(default_factory=dict)
    # A plain Int64 index: an empty RangeIndex would turn the first keys into a RangeIndex whose step
    # (the difference of two 64-bit hashes) overflows on the next reindex.
    line_counts: pd.Series = field(
        default_factory=lambda: pd.Series(dtype="int64", index=pd.Index([], dtype="int64")))
    phone_cache: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


class _Report:
    """Collects error / warning rows for one chunk, vectorised per (field, reason)."""

    def __init__(self, rows: np.ndarray, mapping: dict):
        self.rows = rows
        self.mapping = mapping
        self.bad = np.zeros(len(rows), dtype=bool)
        self.parts: list[pd.DataFrame] = []

    def add(self, mask, target: str, values: pd.Series | None, reason: str, level: str = "error") -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        if level == "error":
            self.bad |= mask
        vals = values.to_numpy(dtype=object)[mask] if values is not None else ""
        self.parts.append(pd.DataFrame({
            "row": self.rows[mask], "column": self.mapping.get(target, target), "field": target,
            "value": vals, "reason": reason, "level": level,
        }))

    def frame(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame({c: pd.Series(dtype="int64" if c == "row" else "str") for c in ERROR_COLUMNS})
        out = pd.concat(self.parts, ignore_index=True)
        return out.sort_values("row", kind="stable").reset_index(drop=True)


def validate_chunk(chunk: pd.DataFrame, mapping: dict, kind: str, start_row: int | None = None,
                   default_region: str = "US", layout: str | None = None,
                   state: ValidationState | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Type and check one text chunk; return the clean canonical rows and a row-level report.

    Args:
        chunk: text DataFrame with the file's headers (as yielded by ``TableReader``).
        mapping: field -> header (``Mapping`` or plain dict), complete per ``missing_required``.
        kind: 'transactions', 'stock' or 'customers'.
        start_row: row number of the chunk's first row (header = row 1); when None, the chunk's
            index is taken as the row numbers (what ``TableReader`` yields).
        default_region: the store's ISO country for phone numbers without '+' and for the
            day/month order of ambiguous dates (month first for 'US').
        layout: overrides ``mapping.layout`` ('uci_online_retail' turns 'C…' invoices into returns).
        state: decisions carried from earlier chunks of the same file (see ``ValidationState``).
    Returns:
        ``(clean, errors)``. ``clean`` has TRANSACTION_COLUMNS / STOCK_COLUMNS / CUSTOMER_COLUMNS
        (typed: datetime64[ns] dates, float amounts, E.164 phones, NaN where empty) plus
        ``source_row``. ``errors`` has ERROR_COLUMNS: row, column (the file's header), field, value,
        reason, level. A row with any ``level == 'error'`` entry is not in ``clean``; a 'warning'
        (e.g. an invalid phone on a purchase line, which is then kept without the phone) is not.

    Transaction rules: an empty customer_id is an anonymous sale (kept, NaN); '12346.0' ids lose
    the '.0'. A negative quantity or total makes a return (both become negative; the price stays
    positive; a negative price or a zero quantity is an error); in the UCI layout an InvoiceNo
    starting with 'C' is a return. A missing total is quantity × price (2 decimals), a missing
    price is |total / quantity| (4 decimals). product_id falls back to product_name; files with
    no product column get product_id 'UNKNOWN'. An empty transaction_id becomes
    '<customer_id>@<date>' (or '…@<date>T<time>' when the time is not midnight). ``line_no`` is the
    n-th identical (transaction_id, product_id) line in file order — the natural key's third part
    — counted over all rows whose key is known, including rejected ones, and continued across
    chunks through ``state``. Customers: an invalid phone is an error (region = default_region),
    an invalid e-mail a warning; sms_consent accepts yes/no/y/n/true/false/1/0/opt-in/opt-out.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    state = state if state is not None else ValidationState()
    layout = layout or getattr(mapping, "layout", "generic")
    rows = (np.arange(start_row, start_row + len(chunk)) if start_row is not None
            else np.asarray(chunk.index, dtype="int64"))
    report = _Report(rows, mapping)
    # Strip the identifier-like text columns; numbers and dates are parsed whitespace-tolerantly.
    # object dtype (plain Python str) keeps missing-value checks cheap on large chunks.
    text = {f: chunk[h].astype(object) for f, h in mapping.items() if h in chunk.columns}
    text = {f: (col if f in _UNSTRIPPED else _by_unique(col, lambda u: u.str.strip())) for f, col in text.items()}
    validator = {"transactions": _transactions, "stock": _stock, "customers": _customers}[kind]
    clean = validator(_Columns(text, len(chunk)), report, state, default_region, layout)
    clean["source_row"] = rows
    clean = clean.loc[~report.bad].reset_index(drop=True)
    return clean, report.frame()


class _Columns:
    """The chunk's mapped text columns by field (positional index), with cached emptiness masks."""

    def __init__(self, text: dict[str, pd.Series], n: int):
        self.text = {f: s.reset_index(drop=True) for f, s in text.items()}
        self.n = n
        self._empty: dict[str, np.ndarray] = {}
        self._blank: pd.Series | None = None

    def __contains__(self, target: str) -> bool:
        return target in self.text

    def get(self, target: str) -> pd.Series:
        """The field's text, or all '' when the field is not mapped."""
        if target in self.text:
            return self.text[target]
        if self._blank is None:
            self._blank = pd.Series(np.full(self.n, "", dtype=object), dtype=object)
        return self._blank

    def empty(self, target: str) -> np.ndarray:
        if target not in self._empty:
            self._empty[target] = (self.get(target).to_numpy() == "") if target in self.text else np.ones(self.n, bool)
        return self._empty[target]

    def optional(self, target: str) -> pd.Series:
        """Text with None where empty."""
        s = self.get(target)
        empty = self.empty(target)
        return s.mask(empty) if empty.any() else s


def _by_unique(s: pd.Series, func) -> pd.Series:
    """Apply a text transformation to the distinct values only (ids and names repeat a lot), then expand."""
    codes, uniques = pd.factorize(s)
    if len(uniques) == 0:
        return s
    before = pd.Series(uniques, dtype=object)
    done = func(before)
    if done.dtype == object and done.equals(before):
        return s
    values = done.to_numpy()[codes]
    if (codes < 0).any():
        values = np.where(codes < 0, None, values)
    return pd.Series(values, index=s.index, dtype=done.dtype if done.dtype != object else object)


def _customer_ids(cols: _Columns) -> pd.Series:
    # Spreadsheets turn ids into floats: '12346.0' -> '12346'; leading zeros are kept.
    def fix(u: pd.Series) -> pd.Series:
        floats = u.str.endswith(".0")
        if not floats.any():
            return u
        return u.mask(floats, u[floats].str.replace(r"^(\d+)\.0+$", r"\1", regex=True))

    return _by_unique(cols.optional("customer_id"), fix)


def _transactions(cols: _Columns, report, state, region, layout) -> pd.DataFrame:
    customer = _customer_ids(cols)
    dates = _parse_dates(cols, "purchase_date", state, region, report, required=True)
    qty = _parse_numbers(cols, "quantity", state, report, required=True)
    price = _parse_numbers(cols, "price_per_unit", state, report)
    total = _parse_numbers(cols, "total_amount", state, report)

    report.add(qty.eq(0), "quantity", cols.get("quantity"), "quantity is zero")
    report.add(price.lt(0), "price_per_unit", cols.get("price_per_unit"),
               "negative price (returns need a negative quantity)")
    money = "price_per_unit" if "price_per_unit" in cols else "total_amount"
    report.add(_blank_amount(cols, "price_per_unit", price) & _blank_amount(cols, "total_amount", total), money,
               cols.get(money), "missing required value (price_per_unit or total_amount)")

    raw_tid = cols.optional("transaction_id")
    if layout == "uci_online_retail":  # 'C…' invoices are cancellations: always a negative quantity
        cancelled = _by_unique(raw_tid, lambda u: u.str.startswith(("C", "c"))).fillna(False).astype(bool)
        qty = qty.mask(cancelled, -qty.abs())
    # A line is a return when either its quantity or its total is negative; both then carry the sign.
    negative = qty.lt(0) | total.lt(0)
    if negative.any():
        qty = qty.mask(negative, -qty.abs())
        total = total.mask(negative, -total.abs())
    total = total.fillna((qty * price).round(2))
    price = price.fillna((total / qty).abs().round(4))

    pname = cols.optional("product_name")
    if "product_id" in cols or "product_name" in cols:
        pid = cols.optional("product_id").fillna(pname) if "product_id" in cols else pname
        key = "product_id" if "product_id" in cols else "product_name"
        report.add(pid.isna(), key, cols.get(key), "missing required value (product)")
    else:  # CDNOW-style: amounts without products
        pid = pd.Series(UNKNOWN_PRODUCT, index=pname.index, dtype=object)

    # No transaction id (CDNOW-style, or a blank cell): the customer's purchases at one moment are one
    # basket; anonymous lines without an id at the same moment share one basket too.
    tid = raw_tid.copy()
    need = tid.isna() & dates.notna()
    if need.any():
        when = dates[need]
        moment = when.dt.strftime("%Y-%m-%d").where(when.dt.normalize().eq(when), when.dt.strftime("%Y-%m-%dT%H:%M:%S"))
        tid.loc[need] = customer[need].fillna("") + "@" + moment

    phone, _ = _parse_phones(cols, region, state, with_type=False)
    report.add(phone.isna().to_numpy() & ~cols.empty("phone"), "phone", cols.get("phone"),
               "invalid phone number (line kept without the phone)", level="warning")

    line_no = _line_numbers(tid, pid, state)
    return pd.DataFrame({
        "customer_id": customer, "transaction_id": tid, "purchase_date": dates, "product_id": pid,
        "product_name": pname, "quantity": qty, "price_per_unit": price, "total_amount": total, "phone": phone,
        "store": cols.optional("store"), "coupon_code": cols.optional("coupon_code"), "line_no": line_no,
    })


def _stock(cols: _Columns, report, state, region, layout) -> pd.DataFrame:
    pname = cols.optional("product_name")
    pid = cols.optional("product_id").fillna(pname)
    key = "product_id" if "product_id" in cols else "product_name"
    report.add(pid.isna(), key, cols.get(key), "missing required value (product)")
    initial = _parse_numbers(cols, "initial_stock", state, report, required=True)
    sold = _parse_numbers(cols, "total_sold", state, report, required=True)
    price = _parse_numbers(cols, "price", state, report)
    for f, values in (("initial_stock", initial), ("total_sold", sold), ("price", price)):
        report.add(values.lt(0), f, cols.get(f), "negative value")
    return pd.DataFrame({"product_id": pid, "product_name": pname, "initial_stock": initial, "total_sold": sold,
                         "price": price, "store": cols.optional("store")})


def _customers(cols: _Columns, report, state, region, layout) -> pd.DataFrame:
    customer = _customer_ids(cols)
    report.add(customer.isna(), "customer_id", cols.get("customer_id"), "missing required value")
    first, last = cols.optional("first_name"), cols.optional("last_name")
    joined = (first.fillna("") + " " + last.fillna("")).str.strip()
    name = cols.optional("name").fillna(joined.mask(joined.eq("")))

    phone, phone_type = _parse_phones(cols, region, state)
    report.add(phone.isna().to_numpy() & ~cols.empty("phone"), "phone", cols.get("phone"),
               f"invalid phone number (region {region})")
    email = cols.optional("email")
    bad_email = email.notna() & ~email.fillna("x@y.z").str.fullmatch(_EMAIL).astype(bool)
    report.add(bad_email, "email", cols.get("email"), "invalid email address (customer kept without it)",
               level="warning")
    email = email.mask(bad_email)

    consent_raw = cols.get("sms_consent")
    consent = _by_unique(consent_raw, lambda u: u.str.casefold().str.replace(r"[\s_\-]+", "", regex=True).map(_CONSENT))
    report.add(consent.isna().to_numpy() & ~cols.empty("sms_consent"), "sms_consent", consent_raw,
               "sms_consent must be yes or no")
    consent_date = _parse_dates(cols, "sms_consent_date", state, region, report)
    return pd.DataFrame({
        "customer_id": customer, "name": name, "first_name": first, "last_name": last, "phone": phone,
        "phone_type": phone_type, "email": email, "store": cols.optional("store"), "sms_consent": consent,
        "sms_consent_date": consent_date,
    })


def _parse_dates(cols: _Columns, target: str, state: ValidationState, region: str, report: _Report,
                 required: bool = False) -> pd.Series:
    """Parse a date column with one format family for the whole file.

    Rule: the families are tried in order (ISO first; then month-first before day-first when the
    region writes dates that way, e.g. US, else day-first first; then 2-digit years and YYYYMMDD);
    the first one that parses every non-empty value wins, else the one that parses the most. The
    choice is kept for the rest of the file once it parses >= 95 % of a chunk. Values it cannot
    parse, or outside 1900-2100, are reported. Time-zone offsets are dropped (local time is kept).
    """
    s, empty = cols.get(target), cols.empty(target)
    if required:
        report.add(empty, target, s, "missing required value")
    result = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    if empty.all():
        return result
    filled = s[~empty]
    family = state.date_formats.get(target)
    if family is None:
        names = list(_DATE_FAMILIES)
        if region.upper() not in _MONTH_FIRST_REGIONS:  # day-first families before month-first ones
            names = ["YYYY-MM-DD", "DD/MM/YYYY", "DD.MM.YYYY", "DD-MM-YYYY", "MM/DD/YYYY", "DD/MM/YY", "MM/DD/YY",
                     "YYYYMMDD"]
        best, best_rate, best_parsed = None, -1.0, None
        for name in names:
            parsed = _parse_family(filled, name)
            rate = parsed.notna().mean()
            if rate > best_rate:
                best, best_rate, best_parsed = name, rate, parsed
            if rate == 1.0:
                break
        if best_rate >= 0.95:
            state.date_formats[target] = best
        family, parsed = best, best_parsed
    else:
        parsed = _parse_family(filled, family)
    result.loc[filled.index] = parsed
    report.add(result.isna().to_numpy() & ~empty, target, s, f"unparseable date (expected {family})")
    return result


def _parse_family(values: pd.Series, family: str) -> pd.Series:
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    formats = _DATE_FAMILIES[family]
    if family == "YYYY-MM-DD":
        formats = formats + ("ISO8601-local",)
    for fmt in formats:
        todo = out.isna()
        if not todo.any():
            break
        todo_values = values[todo]
        if fmt == "ISO8601-local":  # '…10:00:00+02:00' / '…Z': keep the wall-clock time, drop the offset
            fmt = "ISO8601"
            todo_values = todo_values.str.replace(r"^(.*\d:\d\d(?::\d\d(?:\.\d+)?)?)\s*(?:Z|[+-]\d\d:?\d\d)$",
                                                  r"\1", regex=True)
        try:
            parsed = pd.to_datetime(todo_values, format=fmt, errors="coerce")
        except ValueError:  # mixed UTC offsets: the offset-free retry below handles them
            continue
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_localize(None)
        # pandas may return seconds/microseconds resolution; drop years outside our range before the
        # nanosecond cast (which only reaches 1677-2262 and would raise OutOfBoundsDatetime).
        parsed = parsed.where(parsed.between(_DATE_MIN, _DATE_MAX))
        out.loc[todo] = parsed.astype("datetime64[ns]")
    return out.where(out.between(_DATE_MIN, _DATE_MAX))


def _parse_numbers(cols: _Columns, target: str, state: ValidationState, report: _Report,
                   required: bool = False, _empty_reported: bool = False) -> pd.Series:
    """Parse amounts: currency symbols and spaces removed, ',' as thousands separator or decimal mark.

    A column uses the decimal comma when a value can only be read that way ('3,50', '1.234,56');
    that decision holds for the rest of the file. '(3.50)' is negative. Non-numbers are reported.
    """
    s, empty = cols.get(target), cols.empty(target)
    if required and not _empty_reported:
        report.add(empty, target, s, "missing required value")
    if empty.all():
        return pd.Series(np.nan, index=s.index)
    values = _fast_float(s, empty)
    failed = values.isna().to_numpy() & ~empty
    comma_decimal = state.decimal_comma.get(target, False)
    if failed.any() or comma_decimal:
        # Slow path only for what plain float parsing could not read (or for decimal-comma columns).
        redo = ~empty if comma_decimal else failed
        t = s[redo].str.replace(_AMOUNT_NOISE, "", regex=True)
        t = t.str.replace(r"^\((.*)\)$", r"-\1", regex=True)
        if target not in state.decimal_comma and t.str.contains(",", regex=False).any():
            decimal_form = t.str.fullmatch(r"[-+]?\d{1,3}(?:\.\d{3})+,\d*|[-+]?\d*,\d{1,2}|[-+]?\d*,\d{4,}")
            state.decimal_comma[target] = bool(decimal_form.any())
            if state.decimal_comma[target]:
                # Values like '1.234' were read as 1.234 by the fast path: parse the whole column again.
                # Empty cells are reported already; whitespace-only ones are still to be reported.
                return _parse_numbers(cols, target, state, report, required=required, _empty_reported=True)
        if state.decimal_comma.get(target):
            t = t.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        else:
            t = t.str.replace(",", "", regex=False)
        blank = t.eq("").to_numpy()
        values = values.copy()
        values.loc[redo] = pd.to_numeric(t.mask(blank), errors="coerce").astype("float64").to_numpy()
        if blank.any():
            whitespace = np.zeros(len(s), bool)
            whitespace[np.flatnonzero(redo)[blank]] = True
            if required:
                report.add(whitespace, target, s, "missing required value")
            empty = empty | whitespace
    values = values.mask(np.isinf(values))
    report.add(values.isna().to_numpy() & ~empty, target, s, "not a number")
    return values


def _blank_amount(cols: _Columns, target: str, values: pd.Series) -> np.ndarray:
    """Empty, or nothing left once spaces and currency signs are removed ('$', ' '): no amount was given."""
    blank = cols.empty(target).copy()
    check = values.isna().to_numpy() & ~blank
    if check.any():
        rest = cols.get(target)[check].str.replace(_AMOUNT_NOISE, "", regex=True)
        blank[np.flatnonzero(check)] = rest.eq("").to_numpy()
    return blank


def _fast_float(s: pd.Series, empty: np.ndarray) -> pd.Series:
    """Plain float parsing at C speed; NaN everywhere it fails (the caller retries those values)."""
    try:
        return s.mask(empty, "nan").astype("float64")
    except (ValueError, TypeError):
        return pd.to_numeric(s.mask(empty), errors="coerce").astype("float64")


def _parse_phones(cols: _Columns, region: str, state: ValidationState,
                  with_type: bool = True) -> tuple[pd.Series, pd.Series]:
    """E.164 and number type ('mobile', 'fixed_line_or_mobile', …) via phonenumbers; None if empty/invalid."""
    s = cols.get("phone")
    none = pd.Series(None, index=s.index, dtype=object)
    if cols.empty("phone").all():
        return none, none.copy()
    codes, uniques = pd.factorize(s)
    cache = state.phone_cache
    if len(cache) > 500_000:
        cache.clear()
    results = []
    for raw in uniques:  # phonenumbers is scalar: one call per distinct value, not per row
        key = raw[:-2] if raw.endswith(".0") else raw  # a number that went through a spreadsheet float
        cached = cache.get(key)
        if cached is None or (with_type and cached[0] is not None and cached[1] is None):
            cached = cache[key] = _phone(key, region, with_type)
        results.append(cached)
    e164 = np.array([r[0] for r in results] + [None], dtype=object)[codes]
    kind = np.array([r[1] for r in results] + [None], dtype=object)[codes]
    return pd.Series(e164, index=s.index, dtype=object), pd.Series(kind, index=s.index, dtype=object)


def _phone(raw: str, region: str, with_type: bool = True) -> tuple[str | None, str | None]:
    if not raw:
        return None, None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None, None
    if not phonenumbers.is_valid_number(number):
        return None, None
    kind = phonenumbers.PhoneNumberType.to_string(phonenumbers.number_type(number)).lower() if with_type else None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), kind


def _line_numbers(tid: pd.Series, pid: pd.Series, state: ValidationState) -> pd.Series:
    """1-based n-th occurrence of (transaction_id, product_id) in file order, continued across chunks.

    Rows with an error still take their number, so a fixed row re-imported later keeps the key
    it would have had.
    """
    known = tid.notna() & pid.notna()
    out = pd.Series(0, index=tid.index, dtype="int64")
    if not known.any():
        return out
    keys = pd.util.hash_pandas_object(pd.DataFrame({"t": tid[known], "p": pid[known]}), index=False)
    hashes = pd.Series(keys.to_numpy().view("int64"), index=keys.index)
    within = hashes.groupby(hashes.to_numpy(), sort=False).cumcount()
    offset = state.line_counts.reindex(hashes.to_numpy()).fillna(0).to_numpy(dtype="int64")
    out.loc[known] = within.to_numpy() + offset + 1
    counts = hashes.value_counts()
    state.line_counts = state.line_counts.add(counts, fill_value=0).astype("int64")
    return out
