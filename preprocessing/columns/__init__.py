"""Reading uploaded purchase / stock / customer files and mapping their columns — no database.

Three steps, each usable on its own (the importer service strings them together):

1. ``read_table(source, filename)`` (``reader``; encoding and delimiter detection in ``sniffing``)
   opens a CSV (any of ``, ; TAB |``, UTF-8 with or without BOM, UTF-16 with BOM, else
   Windows-1252 / Latin-1), a gzip-compressed CSV, or an XLSX workbook (first sheet), decides the
   format from the bytes (never from the file name), and yields chunks of **text** (every cell a
   ``str``; ``+1 202…`` and ``00042`` survive). Anything that cannot be read raises
   ``FileFormatError`` with a message meant for the store manager.
2. ``detect_mapping(headers, kind)`` (``mapping``) maps the file's headers onto our fields (the
   original system's columns, UCI Online Retail, CDNOW-style, or synonyms); ``missing_required``
   names what is missing.
3. ``validate_chunk(chunk, mapping, kind)`` (``validation``; value parsers in ``parsing``, per-chunk
   state in ``state``) turns a text chunk into typed canonical rows plus a row-level report (row,
   column, value, reason).

Row numbers everywhere are 1-based and count the header as row 1, so "row 7" is the 7th row the
user sees in a spreadsheet (for CSV: the 7th record; it equals the file line unless a quoted value
contains a line break; for XLSX: the sheet's own row number).

This package re-exports the names callers use, so ``from preprocessing.columns import …`` is the
one import the importer, the CLI, the bench and the tests need.
"""

from preprocessing.columns.mapping import (
    KINDS,
    LAYOUTS,
    REQUIRED,
    SYNONYMS,
    Mapping,
    apply_overrides,
    detect_mapping,
    missing_required,
)
from preprocessing.columns.reader import TableReader, read_table
from preprocessing.columns.sniffing import FIELD_SIZE_LIMIT, MAX_COLUMNS, SAMPLE_BYTES, FileFormatError
from preprocessing.columns.state import ERROR_COLUMNS, ValidationState
from preprocessing.columns.validation import (
    CUSTOMER_COLUMNS,
    STOCK_COLUMNS,
    TRANSACTION_COLUMNS,
    UNKNOWN_PRODUCT,
    validate_chunk,
)

__all__ = [
    "CUSTOMER_COLUMNS",
    "ERROR_COLUMNS",
    "FIELD_SIZE_LIMIT",
    "KINDS",
    "LAYOUTS",
    "MAX_COLUMNS",
    "REQUIRED",
    "SAMPLE_BYTES",
    "STOCK_COLUMNS",
    "SYNONYMS",
    "TRANSACTION_COLUMNS",
    "UNKNOWN_PRODUCT",
    "FileFormatError",
    "Mapping",
    "TableReader",
    "ValidationState",
    "apply_overrides",
    "detect_mapping",
    "missing_required",
    "read_table",
    "validate_chunk",
]
