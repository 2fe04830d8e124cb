"""Opening an uploaded CSV / CSV.GZ / XLSX file as chunks of text rows: no database, no flask.

The format is decided from the bytes (never from the file name); every cell stays a ``str`` so
``+1 202…`` and ``00042`` survive until validation. Row numbers are 1-based and count the header as
row 1, as the user sees them in a spreadsheet. What the bytes say about encoding, delimiter and
header, and the messages for files that cannot be read, are in ``sniffing``.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import BinaryIO

import pandas as pd

from preprocessing.columns.sniffing import (
    FIELD_SIZE_LIMIT,
    SAMPLE_BYTES,
    FileFormatError,
    _check_field_sizes,
    _check_headers,
    _detect_encoding,
    _field_error,
    _parser_error,
    _sniff_delimiter,
)

_MAGIC_GZIP = b"\x1f\x8b"
_MAGIC_ZIP = b"PK\x03\x04"
_MAGIC_ZIP_EMPTY = b"PK\x05\x06"
_MAGIC_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def read_table(
    source,
    filename: str = "",
    chunksize: int = 100_000,
    max_expanded_bytes: int | None = None,
    max_rows: int | None = None,
) -> TableReader:
    """Open an uploaded CSV / CSV.GZ / XLSX as text chunks, detecting format, delimiter and encoding.

    Args:
        source: a path, or a binary file-like object (seekable or not; a non-seekable stream is
            spooled to a temporary file first).
        filename: the name the user gave the file; only used in messages.
        chunksize: rows per chunk yielded by iterating the reader.
        max_expanded_bytes: refuse a gzip-compressed file that decompresses to more (a decompression
            bomb); counted while decompressing, since gzip's stored size is unreliable. None: no cap.
        max_rows: refuse a file with more data rows (checked at opening from the line count where it is
            cheap, and exactly while reading). None: no cap.
    Returns:
        A ``TableReader`` (use it as a context manager, or call ``close()``).
    Raises:
        FileFormatError: empty file, binary data, encrypted or corrupt workbook, no header row,
            duplicated or too many columns, a value over ``FIELD_SIZE_LIMIT`` characters.
    """
    return TableReader(source, filename, chunksize, max_expanded_bytes, max_rows)


class TableReader:
    """An opened table: ``headers``, how it was read (``describe()``), and chunks by iteration.

    Each chunk is a DataFrame with the file's headers as columns (object dtype, every cell a ``str``,
    '' when empty) and the 1-based row number (header = row 1) as index; rows that are entirely empty
    are dropped (their numbers are skipped). A file with a header and no rows yields no chunk.
    Iterating again starts from the top, so a preview can be taken before the import. Problems found
    only while reading on (a ragged row, a damaged archive) raise ``FileFormatError`` from the loop.
    """

    def __init__(
        self,
        source,
        filename: str = "",
        chunksize: int = 100_000,
        max_expanded_bytes: int | None = None,
        max_rows: int | None = None,
    ):
        self.filename = filename or getattr(source, "name", "") or "upload"
        self.chunksize = int(chunksize)
        self.max_expanded_bytes = max_expanded_bytes
        self.max_rows = max_rows
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
            raise FileFormatError(
                "The file looks gzip-compressed but is damaged or cut short; compress it again or upload the plain CSV."
            ) from exc
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
                raise FileFormatError(
                    "The file looks gzip-compressed but is damaged; compress it again or upload the plain CSV."
                ) from exc
            self.compression = "gzip"
            fh = _Capped(gz, self.max_expanded_bytes) if self.max_expanded_bytes else gz
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
        except (zipfile.BadZipFile, SyntaxError) as exc:  # SyntaxError: ElementTree's / lxml's ParseError
            raise _damaged_workbook() from exc
        except (KeyError, InvalidFileException, ValueError, OSError, EOFError) as exc:
            raise FileFormatError(
                "This is a zip archive but not an Excel .xlsx workbook. Upload the .xlsx or a CSV file."
            ) from exc
        sheets = self._workbook.worksheets
        if not sheets:
            raise FileFormatError("The workbook has no worksheet.")
        self.sheet_names = [ws.title for ws in sheets]
        self._sheet = sheets[0]
        self.sheet_name = self._sheet.title
        try:
            for number, values in enumerate(self._sheet.iter_rows(values_only=True), start=1):
                cells = [_cell_text(v) for v in values]
                if any(c.strip() for c in cells):
                    while cells and not cells[-1].strip():
                        cells.pop()
                    self.headers, self._header_row = cells, number
                    return
                if number > 1000:
                    break
        except _WORKBOOK_DAMAGE as exc:
            raise _damaged_workbook() from exc
        raise FileFormatError(f"The first sheet ({self.sheet_name!r}) is empty.")

    def _iter_xlsx(self) -> Iterator[pd.DataFrame]:
        try:
            yield from self._xlsx_chunks()
        except _WORKBOOK_DAMAGE as exc:  # a sheet's XML broken further down
            raise _damaged_workbook() from exc

    def _xlsx_chunks(self) -> Iterator[pd.DataFrame]:
        width = len(self.headers)
        rows: list[list[str]] = []
        numbers: list[int] = []
        for number, values in enumerate(
            self._sheet.iter_rows(min_row=self._header_row + 1, values_only=True), start=self._header_row + 1
        ):
            # openpyxl yields rows one by one; converting its cell objects is unavoidable here.
            cells = [_cell_text(v) for v in values[:width]]
            if not any(cells):
                continue
            cells.extend([""] * (width - len(cells)))
            rows.append(cells)
            numbers.append(number)
            if self.max_rows is not None and number - self._header_row > self.max_rows:
                raise _too_many_rows(self.max_rows)
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
        self.encoding, self._long_lines, newlines = _detect_encoding(self._raw)
        if self.max_rows is not None and newlines is not None and newlines > self.max_rows + 1:
            raise _too_many_rows(self.max_rows)  # cheap: the encoding pass counted the lines already
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
        start = 1
        try:
            # header=None: the header row is the parser's first row, so it fixes the width every row is held to.
            # With header=0 pandas would turn the extra leading fields of a longer first data row into an
            # index and shift every column ("RR1,Smith, John,+1…" read with id "Smith").
            reader = pd.read_csv(
                _KeepOpen(self._raw),
                sep=self.delimiter,
                header=None,
                dtype=object,
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=False,
                chunksize=self.chunksize,
                encoding=encoding,
                engine="c",
                quotechar='"',
                on_bad_lines="error",
            )
            for chunk in _chunks(reader, self.chunksize):
                if chunk.shape[1] != len(self.headers):
                    raise FileFormatError("The rows do not have the same number of columns as the header.")
                chunk.columns = self.headers
                chunk.index = pd.RangeIndex(start, start + len(chunk), name="row")
                start += len(chunk)
                if chunk.index[0] == 1:
                    chunk = chunk.iloc[1:]  # the header row itself
                if self.max_rows is not None and start - 2 > self.max_rows:
                    raise _too_many_rows(self.max_rows)
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
            raise _parser_error(exc, len(self.headers), _DELIMITER_NAMES.get(self.delimiter or ",")) from exc
        except UnicodeDecodeError as exc:
            raise FileFormatError(
                f"The file is not valid {self.encoding} text; save it as UTF-8 CSV and upload it again."
            ) from exc
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise FileFormatError(
                "The compressed file is damaged or cut short; compress it again or upload the plain CSV."
            ) from exc

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
        enc = {
            "utf-8": "UTF-8",
            "utf-8-sig": "UTF-8 with BOM",
            "utf-16": "UTF-16",
            "cp1252": "Windows-1252",
            "latin-1": "Latin-1",
        }.get(self.encoding or "", self.encoding)
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

    def __enter__(self) -> TableReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _chunks(reader, size: int) -> Iterator[pd.DataFrame]:
    """The parser's chunks, the first one a row longer (it holds the header row, which the caller drops)."""
    first = size + 1
    while True:
        try:
            yield reader.get_chunk(first)
        except StopIteration:
            return
        first = size


def _too_many_rows(limit: int) -> FileFormatError:
    return FileFormatError(
        f"The file has more than {limit:,} rows, the most one import takes (IMPORT_MAX_ROWS); "
        "nothing was imported. Split it into smaller files."
    )


class _Capped(io.RawIOBase):
    """A decompressed stream that refuses to give more than ``limit`` bytes (a decompression bomb).

    Counts the position, not the total read, so reading the file again from the top is not penalised.
    """

    def __init__(self, inner: BinaryIO, limit: int):
        self._inner = inner
        self._limit = limit

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def read(self, size: int = -1) -> bytes:
        room = self._limit - self._inner.tell()
        data = self._inner.read(room + 1 if size is None or size < 0 or size > room + 1 else size)
        if self._inner.tell() > self._limit:
            megabytes = self._limit / 1048576
            shown = f"{megabytes:,.0f}" if megabytes >= 10 else f"{megabytes:.2g}"
            raise FileFormatError(
                f"The compressed file expands to more than {shown} MB "
                "(IMPORT_MAX_EXPANDED_MB), far more than purchase data needs; it is refused. "
                "Upload the plain CSV or split it."
            )
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# What a damaged workbook raises from openpyxl while its sheet is read (XML parse errors are SyntaxErrors).
_WORKBOOK_DAMAGE = (SyntaxError, zipfile.BadZipFile, zlib.error, EOFError, KeyError)


def _damaged_workbook() -> FileFormatError:
    return FileFormatError(
        "The Excel file is damaged (not a readable .xlsx archive). Save it again from Excel and re-upload."
    )


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
