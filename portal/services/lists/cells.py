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


# --- XLSX column types -----------------------------------------------------------------------------
# Export headers are stable (DESIGN.md "Contracts"), so a column's type is keyed by its header: the
# same name means the same kind of value in every list that has it.

MONEY_COLUMNS = frozenset({"monetary", "avg_price_per_unit", "clv_12m", "stock_value"})
SHARE_COLUMNS = frozenset({"churn_probability", "p_alive", "p_return_12m", "support", "confidence", "sold_ratio"})
TIME_COLUMNS = frozenset({"scored_at", "sent_at", "redeemed_at"})
WHOLE_COLUMNS = frozenset(
    {
        "frequency",
        "recency",
        "total_quantity",
        "num_unique_products",
        "store_visit_frequency",
        "active_days",
        "baskets",
        "campaign_id",
    }
)
DECIMAL_COLUMNS = frozenset({"avg_purchase_gap_days", "expected_purchases_90d", "lift"})
# Identifiers that look like numbers to a spreadsheet but are not: kept as text cells.
TEXT_COLUMNS = frozenset({"customer_id", "phone", "product_id", "coupon_code", "message_sid", "error_code"})

SHARE_FORMAT = "0.0%"
TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
WHOLE_FORMAT = "#,##0"
DECIMAL_FORMAT = "#,##0.00"
TEXT_FORMAT = "@"


def money_format(symbol: str | None) -> str:
    """An Excel number format for amounts in one currency (``"$"#,##0.00``); no symbol: plain 2 decimals."""
    if not symbol:
        return DECIMAL_FORMAT
    quoted = '"' + symbol.replace('"', "") + '"'
    return f"{quoted}#,##0.00;-{quoted}#,##0.00"


def column_format(header: str, currency_symbol: str | None = None) -> str | None:
    """The XLSX number format of an export column (None: General)."""
    if header in MONEY_COLUMNS:
        return money_format(currency_symbol)
    if header in SHARE_COLUMNS:
        return SHARE_FORMAT
    if header in TIME_COLUMNS:
        return TIME_FORMAT
    if header in WHOLE_COLUMNS:
        return WHOLE_FORMAT
    if header in DECIMAL_COLUMNS:
        return DECIMAL_FORMAT
    if header in TEXT_COLUMNS:
        return TEXT_FORMAT
    return None


def typed_xlsx_value(header: str, value: Any) -> Any:
    """``xlsx_cell`` plus the column's type: identifiers stay text, numbers in number columns are numbers."""
    value = xlsx_cell(value)
    if value is None:
        return None
    if header in TEXT_COLUMNS and not isinstance(value, str):
        return str(value)
    if isinstance(value, Decimal) and header not in MONEY_COLUMNS:
        return float(value)
    return value


def display_width(header: str, values: list[Any], fmt: str | None) -> float:
    """A column width (in characters) that fits the header and the sampled values, 8 to 50."""
    widest = len(header)
    for value in values:
        if value is None:
            continue
        if isinstance(value, datetime):
            size = 19
        elif fmt is not None and fmt not in (TEXT_FORMAT,) and isinstance(value, (int, float, Decimal)):
            size = len(f"{float(value):,.2f}") + (4 if fmt.startswith('"') else 1)
        else:
            size = len(str(value))
        widest = max(widest, size)
    return float(min(max(widest + 2, 8), 50))
