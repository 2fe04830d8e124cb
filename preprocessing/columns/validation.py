"""Turning a text chunk into typed canonical rows plus a row-level report (row, column, value, reason).

``validate_chunk`` applies the rules of one kind of file (transactions, stock, customers) on top of
the value parsers in ``parsing``; rows with an error are left out of the clean rows, warnings are not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from preprocessing.columns.mapping import KINDS
from preprocessing.columns.parsing import _blank_amount, _parse_dates, _parse_numbers, _parse_phones
from preprocessing.columns.state import ValidationState, _Columns, _Report

UNKNOWN_PRODUCT = "UNKNOWN"  # product_id for layouts without products (CDNOW-style)
TRANSACTION_COLUMNS = [
    "customer_id",
    "transaction_id",
    "purchase_date",
    "product_id",
    "product_name",
    "quantity",
    "price_per_unit",
    "total_amount",
    "phone",
    "store",
    "coupon_code",
    "line_no",
    "source_row",
]
STOCK_COLUMNS = ["product_id", "product_name", "initial_stock", "total_sold", "price", "store", "source_row"]
CUSTOMER_COLUMNS = [
    "customer_id",
    "name",
    "first_name",
    "last_name",
    "phone",
    "phone_type",
    "email",
    "store",
    "sms_consent",
    "sms_consent_date",
    "birthday",
    "source_row",
]
_CONSENT = {
    "yes": "yes",
    "y": "yes",
    "true": "yes",
    "1": "yes",
    "x": "yes",
    "optin": "yes",
    "optedin": "yes",
    "subscribed": "yes",
    "no": "no",
    "n": "no",
    "false": "no",
    "0": "no",
    "optout": "no",
    "optedout": "no",
    "unsubscribed": "no",
}
_UNSTRIPPED = {"quantity", "price_per_unit", "total_amount", "purchase_date", "initial_stock", "total_sold", "price"}
_EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"


def validate_chunk(
    chunk: pd.DataFrame,
    mapping: dict,
    kind: str,
    start_row: int | None = None,
    default_region: str = "US",
    layout: str | None = None,
    state: ValidationState | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
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
    rows = (
        np.arange(start_row, start_row + len(chunk))
        if start_row is not None
        else np.asarray(chunk.index, dtype="int64")
    )
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
    report.add(
        price.lt(0), "price_per_unit", cols.get("price_per_unit"), "negative price (returns need a negative quantity)"
    )
    money = "price_per_unit" if "price_per_unit" in cols else "total_amount"
    report.add(
        _blank_amount(cols, "price_per_unit", price) & _blank_amount(cols, "total_amount", total),
        money,
        cols.get(money),
        "missing required value (price_per_unit or total_amount)",
    )

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
    report.add(
        phone.isna().to_numpy() & ~cols.empty("phone"),
        "phone",
        cols.get("phone"),
        "invalid phone number (line kept without the phone)",
        level="warning",
    )

    line_no = _line_numbers(tid, pid, state)
    return pd.DataFrame(
        {
            "customer_id": customer,
            "transaction_id": tid,
            "purchase_date": dates,
            "product_id": pid,
            "product_name": pname,
            "quantity": qty,
            "price_per_unit": price,
            "total_amount": total,
            "phone": phone,
            "store": cols.optional("store"),
            "coupon_code": cols.optional("coupon_code"),
            "line_no": line_no,
        }
    )


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
    return pd.DataFrame(
        {
            "product_id": pid,
            "product_name": pname,
            "initial_stock": initial,
            "total_sold": sold,
            "price": price,
            "store": cols.optional("store"),
        }
    )


def _customers(cols: _Columns, report, state, region, layout) -> pd.DataFrame:
    customer = _customer_ids(cols)
    report.add(customer.isna(), "customer_id", cols.get("customer_id"), "missing required value")
    first, last = cols.optional("first_name"), cols.optional("last_name")
    joined = (first.fillna("") + " " + last.fillna("")).str.strip()
    name = cols.optional("name").fillna(joined.mask(joined.eq("")))

    phone, phone_type = _parse_phones(cols, region, state)
    report.add(
        phone.isna().to_numpy() & ~cols.empty("phone"),
        "phone",
        cols.get("phone"),
        f"invalid phone number (region {region})",
    )
    email = cols.optional("email")
    bad_email = email.notna() & ~email.fillna("x@y.z").str.fullmatch(_EMAIL).astype(bool)
    report.add(
        bad_email, "email", cols.get("email"), "invalid email address (customer kept without it)", level="warning"
    )
    email = email.mask(bad_email)

    consent_raw = cols.get("sms_consent")
    consent = _by_unique(consent_raw, lambda u: u.str.casefold().str.replace(r"[\s_\-]+", "", regex=True).map(_CONSENT))
    report.add(
        consent.isna().to_numpy() & ~cols.empty("sms_consent"),
        "sms_consent",
        consent_raw,
        "sms_consent must be yes or no",
    )
    consent_date = _parse_dates(cols, "sms_consent_date", state, region, report)
    birthday = _birthdays(cols, state, region, report)
    return pd.DataFrame(
        {
            "customer_id": customer,
            "name": name,
            "first_name": first,
            "last_name": last,
            "phone": phone,
            "phone_type": phone_type,
            "email": email,
            "store": cols.optional("store"),
            "sms_consent": consent,
            "sms_consent_date": consent_date,
            "birthday": birthday,
        }
    )


class _AsWarning:
    """A report that files every problem as a warning with its own reason (the row is kept without the value)."""

    def __init__(self, report, reason: str):
        self.report, self.reason = report, reason

    def add(self, mask, target, values, reason, level="error"):
        self.report.add(mask, target, values, f"{self.reason} ({reason})", level="warning")


def _birthdays(cols: _Columns, state: ValidationState, region: str, report) -> pd.Series:
    """The optional birthday (a date; the year may be a placeholder): unparseable ones are warnings, never refusals."""
    if "birthday" not in cols:
        return pd.Series(pd.NaT, index=range(cols.n), dtype="datetime64[ns]")
    return _parse_dates(cols, "birthday", state, region, _AsWarning(report, "birthday left out"))


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
