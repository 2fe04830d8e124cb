"""Parsing text cells into typed values: dates, amounts and phone numbers.

Each parser decides once per file where a column is ambiguous (the date format family, a decimal
comma) and remembers it in ``ValidationState``; values it cannot read go to the chunk's report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import phonenumbers

from preprocessing.columns.state import ValidationState, _Columns, _Report

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
_AMOUNT_NOISE = r"[\s\u00a0$€£¥]|^(?:USD|EUR|GBP)|(?:USD|EUR|GBP)$"  # stripped before parsing amounts


def _parse_dates(
    cols: _Columns, target: str, state: ValidationState, region: str, report: _Report, required: bool = False
) -> pd.Series:
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
            names = [
                "YYYY-MM-DD",
                "DD/MM/YYYY",
                "DD.MM.YYYY",
                "DD-MM-YYYY",
                "MM/DD/YYYY",
                "DD/MM/YY",
                "MM/DD/YY",
                "YYYYMMDD",
            ]
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
            todo_values = todo_values.str.replace(
                r"^(.*\d:\d\d(?::\d\d(?:\.\d+)?)?)\s*(?:Z|[+-]\d\d:?\d\d)$", r"\1", regex=True
            )
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


def _parse_numbers(
    cols: _Columns,
    target: str,
    state: ValidationState,
    report: _Report,
    required: bool = False,
    _empty_reported: bool = False,
) -> pd.Series:
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


def _parse_phones(
    cols: _Columns, region: str, state: ValidationState, with_type: bool = True
) -> tuple[pd.Series, pd.Series]:
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
