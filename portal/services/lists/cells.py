"""How one value is written into an exported CSV or XLSX cell, safe to open in a spreadsheet.

Numbers stay plain numbers, times become ISO 8601 UTC, phone numbers E.164, and text a spreadsheet
would run as a formula is neutralised (OWASP CSV injection). Every list export goes through these
functions, so a CSV and an XLSX of the same list hold the same values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import phonenumbers

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def e164(phone: str | None, region: str | None = None) -> str | None:
    """A phone number in E.164 (stored numbers already are); unparseable numbers are left as given."""
    if not phone:
        return None
    phone = phone.strip()
    if _E164.match(phone):
        return phone
    try:
        parsed = phonenumbers.parse(phone, region or "US")
    except phonenumbers.NumberParseException:
        return phone
    if not phonenumbers.is_possible_number(parsed):
        return phone
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def neutralise(text: str) -> str:
    """OWASP CSV injection: prefix ``'`` to text a spreadsheet would run as a formula.

    A cell starting with ``= + - @``, tab or CR is neutralised, except when the whole cell is a
    number (``-12.5``) or an E.164 phone number (``+12025550123``), which spreadsheets read as data.
    """
    if text and text.startswith(_DANGEROUS) and not (_NUMBER.match(text) or _E164.match(text)):
        return "'" + text
    return text


def _fmt_float(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in {"-0", ""} else text


def _fmt_datetime(value: datetime) -> str:
    # Exported timestamps are UTC columns; SQLite hands them back naive.
    value = value.astimezone(timezone.utc) if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    return value.replace(microsecond=0).isoformat()


# One formatter per Python type: a dict lookup per cell keeps a 1M-row export fast.
_CSV_BY_TYPE: dict[type, Callable[[Any], str]] = {
    type(None): lambda v: "",
    str: neutralise,
    int: str,
    bool: lambda v: "true" if v else "false",
    float: _fmt_float,
    Decimal: lambda v: format(v, "f"),  # money keeps its scale: 310.00
    datetime: _fmt_datetime,
    date: date.isoformat,
}


def csv_cell(value: Any) -> str:
    """One value as CSV text: numbers plain, times in ISO 8601 UTC, text neutralised."""
    formatter = _CSV_BY_TYPE.get(type(value))
    if formatter is None:
        return neutralise(str(value))
    return formatter(value)


def xlsx_cell(value: Any) -> Any:
    """One value for openpyxl: numbers stay numbers, times naive UTC, text neutralised."""
    if value is None or isinstance(value, (bool, int, float, Decimal)):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.replace(microsecond=0)
    if isinstance(value, date):
        return value
    return neutralise(str(value))
