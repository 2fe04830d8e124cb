"""How an uploaded text file is written, and why it cannot be read: no database, no flask.

Everything ``TableReader`` decides from the bytes before it reads rows: the encoding (UTF-8 with or
without BOM, UTF-16 by its BOM, else Windows-1252 / Latin-1), the delimiter (``, ; TAB |``), whether
the header row names columns we can map, and the size limits. ``FileFormatError`` carries the
message for the store manager, written here so every reader step words its refusals the same way.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from typing import BinaryIO

import pandas as pd

MAX_COLUMNS = 500
FIELD_SIZE_LIMIT = 131_072  # characters in one value; the csv module's default field_size_limit
SAMPLE_BYTES = 1 << 20
_DELIMITERS = ",;\t|"


class FileFormatError(ValueError):
    """A file that cannot be read as a table; ``message`` is meant for the person who uploaded it."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _detect_encoding(fh: BinaryIO) -> tuple[str, bool, int | None]:
    """(encoding, has a line longer than FIELD_SIZE_LIMIT, line breaks) from one pass over the whole stream.

    UTF-8 (with or without BOM) when every byte decodes, UTF-16 by its BOM, else Windows-1252 when
    it uses that code page's 0x80-0x9F characters, else Latin-1.
    """
    fh.seek(0)
    head = fh.read(4)
    if head.startswith(codecs.BOM_UTF8):
        name = "utf-8-sig"
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", True, None
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
    newlines = 0
    while block := fh.read(SAMPLE_BYTES):
        newlines += block.count(b"\n")
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
            return name, long_lines, newlines
        except UnicodeDecodeError:
            pass
    # Not UTF-8. Windows-1252 and Latin-1 agree outside 0x80-0x9F; name the one that applies.
    if high_c1 and not undefined_1252:
        return "cp1252", long_lines, newlines
    return "latin-1", long_lines, newlines


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
        raise FileFormatError(
            "These column names appear more than once: "
            + ", ".join(repr(d) for d in dupes)
            + ". Rename or remove the duplicates."
        )
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
    return FileFormatError(
        f"A value in the first rows is longer than {FIELD_SIZE_LIMIT:,} characters (or a quote is never closed): {exc}."
    )


def _parser_error(exc: Exception, width: int, delimiter: str = "comma") -> FileFormatError:
    """The refusal for a row the C parser could not fit under the header (its record number is our row number)."""
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if m:
        return FileFormatError(
            f"Row {m.group(2)} has {m.group(3)} values but the header has {width} columns; a value "
            f"probably contains an unquoted {delimiter}. Nothing was imported: put such values "
            "in double quotes (or check the delimiter) and upload the file again."
        )
    if "out of memory" in str(exc) or "field larger" in str(exc):
        return _field_error(exc)
    return FileFormatError(f"The CSV could not be parsed: {exc}")
