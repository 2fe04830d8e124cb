"""One list machinery for every list page, its CSV/XLSX exports and the ``flask export`` command.

A list is registered once (``LISTS``) with: the query built from the query-string filters and the
user (store scoping applied through the services), its sort options, the stable snake_case export
headers (DESIGN.md "Contracts") and a row formatter. Pages get keyset pages from ``list_page``;
``?format=csv|xlsx`` and the CLI get exactly the same rows from ``prepare`` + ``csv_chunks`` /
``write_xlsx``. Every export is audited (action ``export``).
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

import phonenumbers
from sqlalchemy import Float, cast, func, or_, select
from werkzeug.datastructures import MultiDict

from portal.extensions import db
from portal.models import BundleRule, Customer, ModelRecord, OutboxMessage, Product, StockLevel, Store
from portal.security import scope_to_user
from portal.services import audit
from portal.services import customers as customer_service
from portal.services import settings as settings_service
from portal.params import parse_id

XLSX_MAX_ROWS = 1_048_575  # Excel's 1,048,576 rows minus the header row
BATCH = 2000  # rows fetched per round trip (server-side cursor on PostgreSQL)

CUSTOMER_HEADERS = (
    "customer_id", "name", "phone", "email", "store", "sms_consent", "tier", "reward", "monetary",
    "frequency", "recency", "total_quantity", "num_unique_products", "avg_price_per_unit",
    "store_visit_frequency", "active_days", "avg_purchase_gap_days", "churn_probability", "churn_band",
    "p_alive", "expected_purchases_90d", "clv_12m", "scored_at",
)
BUNDLE_HEADERS = ("antecedents", "consequents", "support", "confidence", "lift", "baskets")
DEAD_STOCK_HEADERS = ("product_id", "product_name", "initial_stock", "total_sold", "sold_ratio", "stock_value")
RECIPIENT_HEADERS = ("campaign_id", "customer_id", "phone", "group", "status", "error_code", "message_sid",
                     "sent_at", "coupon_code", "redeemed_at")

# Query-string keys that are about the export, not the filter.
EXPORT_KEYS = ("format", "columns", "include_opted_out", "after")


class ExportError(ValueError):
    """An export that cannot be produced as asked; the message says what to do instead."""


@dataclass(frozen=True)
class ListDef:
    """One list: how to query it, sort it, and turn its rows into export cells.

    ``query(params, user)`` returns an unordered ``select(Entity)`` with filters and store scoping;
    ``columns`` are the SQL columns an export reads (added with ``with_only_columns``);
    ``row(ctx)`` returns a function mapping one such row to a tuple in ``headers`` order.
    """

    name: str
    title: str
    headers: tuple[str, ...]
    filter_keys: tuple[str, ...]
    query: Callable[[Mapping, Any], Any]
    key: Any
    sorts: Mapping[str, Any]
    default_sort: str
    columns: Callable[[], tuple]
    row: Callable[[dict], Callable[[Any], tuple]]
    endpoint: str | None = None  # the list page, for links from segments and the export history
    customer_type: bool = False  # opted-out customers are left out of its exports unless asked
    context: Callable[[], dict] = field(default=lambda: {})


LISTS: dict[str, ListDef] = {}


def register(definition: ListDef) -> ListDef:
    """Add a list to the registry (pages, exports, segments and the CLI find it by name)."""
    LISTS[definition.name] = definition
    return definition


def get(name: str) -> ListDef:
    """The list named ``name`` or an ExportError naming the lists that exist."""
    try:
        return LISTS[name]
    except KeyError:
        raise ExportError(f"Unknown list '{name}'; choose one of: {', '.join(LISTS)}.") from None


# --- helpers shared by the list definitions --------------------------------------------------

def _first(params: Mapping, key: str) -> str:
    value = params.get(key)
    return (value or "").strip() if isinstance(value, str) else ""


def _getlist(params: Mapping, key: str) -> list[str]:
    if hasattr(params, "getlist"):
        return params.getlist(key)
    value = params.get(key)
    return [value] if isinstance(value, str) else list(value or [])


def parse_filter(text: str | None) -> MultiDict:
    """A ``band=High&tier=Gold`` filter string (CLI ``--filter``, saved segments) as query params."""
    text = (text or "").strip().lstrip("?")
    return MultiDict(parse_qsl(text, keep_blank_values=False))


def filter_string(definition: ListDef, params: Mapping) -> str:
    """The canonical filter of ``params`` for this list (its filter keys and sort, nothing else)."""
    pairs = [(k, _first(params, k)) for k in (*definition.filter_keys, "sort") if _first(params, k)]
    return urlencode(pairs)


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


def _truthy(value: str) -> bool:
    return value.lower() in {"1", "true", "yes", "on", "y"}


# --- customers and at-risk --------------------------------------------------------------------

def _risk_value():
    """Churn probability x value (12-month CLV where scored, else the last 12 months' spend)."""
    value = func.coalesce(cast(Customer.clv_12m, Float), cast(Customer.spend_12m, Float))
    return cast(Customer.churn_probability, Float) * value


def _customer_query(params: Mapping, user):
    return customer_service.filtered_customers(params, user)


def _at_risk_query(params: Mapping, user):
    return customer_service.filtered_customers(params, user).where(Customer.churn_band.isnot(None))


def _customer_columns() -> tuple:
    c = Customer
    return (c.id, c.external_id, c.name, c.phone, c.email, c.store_id, c.sms_consent, c.tier, c.monetary,
            c.frequency, c.recency, c.total_quantity, c.num_unique_products, c.avg_price_per_unit,
            c.store_visit_frequency, c.active_days, c.avg_purchase_gap_days, c.churn_probability, c.churn_band,
            c.p_alive, c.expected_purchases_90d, c.clv_12m, c.scored_at)


def _customer_context() -> dict:
    values = settings_service.all_values()
    stores = {s.id: (s.name, s.phone_region) for s in db.session.scalars(select(Store))}
    rewards = {t: values.get(f"reward.{t}") for t in settings_service.TIERS}
    return {"stores": stores, "rewards": rewards}


def _customer_row(ctx: dict) -> Callable[[Any], tuple]:
    stores, rewards = ctx["stores"], ctx["rewards"]

    def row(r) -> tuple:
        store_name, region = stores.get(r[5], (None, None))
        return (r[1], r[2], e164(r[3], region), r[4], store_name, r[6], r[7], rewards.get(r[7]) if r[7] else None,
                *r[8:])
    return row


CUSTOMER_SORTS = dict(customer_service.SORTS)

register(ListDef(
    name="customers", title="Customers", headers=CUSTOMER_HEADERS,
    filter_keys=customer_service.FILTER_KEYS, query=_customer_query, key=Customer.id,
    sorts=CUSTOMER_SORTS, default_sort="", columns=_customer_columns, row=_customer_row,
    context=_customer_context, endpoint="customers.index", customer_type=True,
))
register(ListDef(
    name="at-risk", title="At-risk customers", headers=CUSTOMER_HEADERS,
    filter_keys=customer_service.FILTER_KEYS, query=_at_risk_query, key=Customer.id,
    sorts={**CUSTOMER_SORTS, "risk_value": _risk_value()}, default_sort="-risk_value",
    columns=_customer_columns, row=_customer_row, context=_customer_context, endpoint="churn.index",
    customer_type=True,
))


# --- bundles -----------------------------------------------------------------------------------

def _active_bundles_model():
    return (select(ModelRecord.id).where(ModelRecord.name == "bundles", ModelRecord.active.is_(True))
            .order_by(ModelRecord.trained_at.desc(), ModelRecord.id.desc()).limit(1).scalar_subquery())


def _bundle_query(params: Mapping, user):
    query = select(BundleRule).where(BundleRule.model_id == _active_bundles_model())
    q = _first(params, "q")
    if q:
        like = f"%{q}%"
        query = query.where(or_(BundleRule.antecedent_names.ilike(like), BundleRule.consequent_names.ilike(like)))
    for key, col in (("min_lift", BundleRule.lift), ("min_confidence", BundleRule.confidence),
                     ("min_support", BundleRule.support)):
        raw = _first(params, key)
        try:
            query = query.where(col >= float(raw)) if raw else query
        except ValueError:
            pass
    return query


def _bundle_columns() -> tuple:
    b = BundleRule
    return (b.antecedents, b.consequents, b.antecedent_names, b.consequent_names, b.support, b.confidence,
            b.lift, b.baskets)


def _bundle_row(ctx: dict) -> Callable[[Any], tuple]:
    def row(r) -> tuple:
        return (r[2] or ", ".join(map(str, r[0] or [])), r[3] or ", ".join(map(str, r[1] or [])), *r[4:])
    return row


register(ListDef(
    name="bundles", title="Bundle suggestions", headers=BUNDLE_HEADERS,
    filter_keys=("q", "min_lift", "min_confidence", "min_support"), query=_bundle_query, key=BundleRule.id,
    sorts={"lift": BundleRule.lift, "confidence": BundleRule.confidence, "support": BundleRule.support,
           "baskets": BundleRule.baskets},
    default_sort="-lift", columns=_bundle_columns, row=_bundle_row, endpoint="bundles.index",
))


# --- dead stock --------------------------------------------------------------------------------

def _sold_ratio():
    return cast(StockLevel.total_sold, Float) / cast(StockLevel.initial_stock, Float)


def _dead_stock_query(params: Mapping, user):
    ratio = float(settings_service.get("bundles.dead_stock_ratio"))
    query = (select(StockLevel).join(Product, StockLevel.product_id == Product.id)
             # Rows with a missing or negative total_sold are data errors (the Bundles page lists them), not dead stock.
             .where(StockLevel.initial_stock > 0, StockLevel.total_sold.isnot(None), StockLevel.total_sold >= 0,
                    cast(StockLevel.total_sold, Float) < ratio * cast(StockLevel.initial_stock, Float)))
    if user is not None:
        query = scope_to_user(query, StockLevel.store_id, user)
    q = _first(params, "q")
    if q:
        query = query.where(or_(Product.external_id == q, Product.name.ilike(f"%{q}%")))
    store = _first(params, "store")
    if store:
        query = query.join(Store, StockLevel.store_id == Store.id).where(
            or_(Store.name == store, Store.id == (parse_id(store) if parse_id(store) is not None else -1)))
    return query


def _dead_stock_columns() -> tuple:
    return (Product.external_id, Product.name, StockLevel.initial_stock, StockLevel.total_sold, Product.price)


def _quantity(value: Decimal | None) -> int | float | None:
    """A stock quantity as a plain number (100, not 100.000)."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _dead_stock_row(ctx: dict) -> Callable[[Any], tuple]:
    def row(r) -> tuple:
        initial, sold, price = r[2], r[3] or Decimal(0), r[4]
        ratio = float(sold) / float(initial) if initial else None
        value = ((Decimal(initial) - Decimal(sold)) * Decimal(price)).quantize(Decimal("0.01")) \
            if price is not None and initial is not None else None
        return (r[0], r[1], _quantity(initial), _quantity(sold), round(ratio, 4) if ratio is not None else None,
                value)
    return row


register(ListDef(
    name="dead-stock", title="Dead stock", headers=DEAD_STOCK_HEADERS,
    filter_keys=("q", "store"), query=_dead_stock_query, key=StockLevel.id,
    sorts={"sold_ratio": _sold_ratio(), "initial_stock": StockLevel.initial_stock}, default_sort="sold_ratio",
    columns=_dead_stock_columns, row=_dead_stock_row, endpoint="bundles.index",
))


# --- campaign recipients -----------------------------------------------------------------------

def _recipients_query(params: Mapping, user):
    raw = _first(params, "campaign")
    if parse_id(raw) is None:
        raise ExportError("Choose a campaign: campaign-recipients needs campaign=<id> in the filter.")
    query = (select(OutboxMessage).join(Customer, OutboxMessage.customer_id == Customer.id)
             .where(OutboxMessage.campaign_id == parse_id(raw), Customer.erased_at.is_(None)))
    if user is not None:
        query = scope_to_user(query, Customer.store_id, user)
    for key, col in (("status", OutboxMessage.status), ("group", OutboxMessage.group)):
        value = _first(params, key)
        if value:
            query = query.where(col == value)
    q = _first(params, "q")
    if q:
        query = query.where(or_(Customer.external_id == q, OutboxMessage.phone.like(f"%{q.replace(' ', '')}%")))
    return query


def _recipient_columns() -> tuple:
    o = OutboxMessage
    return (o.campaign_id, Customer.external_id, o.phone, o.group, o.status, o.error_code, o.message_sid,
            o.sent_at, o.coupon_code, o.redeemed_at)


def _recipient_row(ctx: dict) -> Callable[[Any], tuple]:
    def row(r) -> tuple:
        return (r[0], r[1], e164(r[2]), *r[3:])
    return row


register(ListDef(
    name="campaign-recipients", title="Campaign recipients", headers=RECIPIENT_HEADERS,
    filter_keys=("campaign", "status", "group", "q"), query=_recipients_query, key=OutboxMessage.id,
    sorts={"sent_at": OutboxMessage.sent_at, "status": OutboxMessage.status}, default_sort="",
    columns=_recipient_columns, row=_recipient_row, endpoint="campaigns.index",
))

__all__ = ["Export", "ExportError", "LISTS", "ListDef", "XLSX_MAX_ROWS", "count", "csv_chunks",
           "get", "list_page", "neutralise", "parse_filter", "prepare", "record_export", "register", "write_xlsx"]


# --- pages -------------------------------------------------------------------------------------

def sort_of(definition: ListDef, params: Mapping) -> tuple[Any, bool, str]:
    """The (sort expression or None, descending, sort key as given) for ``params``' ``sort``."""
    key = _first(params, "sort") or definition.default_sort
    expr = definition.sorts.get(key.lstrip("-"))
    if expr is None:
        key = definition.default_sort
        expr = definition.sorts.get(key.lstrip("-"))
    return expr, key.startswith("-"), key


def list_page(name: str, params: Mapping, user, size: int | None = None):
    """The keyset ``Page`` of list ``name`` for the current request (filters, sort, store scoping)."""
    from portal.services.listing import Page

    definition = get(name)
    sort, descending, _ = sort_of(definition, params)
    return Page.from_request(definition.query(params, user), key=definition.key, sort=sort,
                             descending=descending, size=size)


# --- exports -----------------------------------------------------------------------------------

@dataclass
class Export:
    """A resolved export: the list, the chosen columns and the filtered, ordered query."""

    definition: ListDef
    params: Mapping
    user: Any
    columns: list[str]
    include_opted_out: bool
    filter: str

    @property
    def base_query(self):
        query = self.definition.query(self.params, self.user)
        if self.definition.customer_type and not self.include_opted_out:
            query = query.where(Customer.sms_consent != "opted_out")
        return query

    def count(self) -> int:
        """How many rows the export holds (one COUNT query, no rows loaded)."""
        subq = self.base_query.with_only_columns(self.definition.key).order_by(None).subquery()
        return db.session.scalar(select(func.count()).select_from(subq)) or 0

    def statement(self):
        """The export's ordered column query: the page's sort, then the key; NULLs last."""
        sort, descending, _ = sort_of(self.definition, self.params)
        order = []
        if sort is not None:
            order.append((sort.desc() if descending else sort.asc()).nulls_last())
        order.append(self.definition.key.desc() if descending and sort is not None else self.definition.key.asc())
        return self.base_query.with_only_columns(*self.definition.columns()).order_by(*order)

    def rows(self) -> Iterator[tuple]:
        """Full rows in header order, fetched in batches (bounded memory at any size)."""
        make = self.definition.row(self.definition.context())
        # Core execution on the session's connection: no ORM row processing; yield_per streams
        # (a server-side cursor on PostgreSQL, batched fetchmany on SQLite).
        result = db.session.connection().execute(self.statement().execution_options(yield_per=BATCH))
        try:
            for partition in result.partitions():
                for r in partition:
                    yield make(r)
        finally:
            result.close()

    def cells(self) -> Iterator[tuple]:
        """Rows cut to the chosen columns, in the chosen order."""
        index = [self.definition.headers.index(c) for c in self.columns]
        if index == list(range(len(self.definition.headers))):
            yield from self.rows()
            return
        for r in self.rows():
            yield tuple(r[i] for i in index)


def prepare(name: str, params: Mapping, user) -> Export:
    """Resolve list ``name`` with ``params`` (filters + ``columns`` + ``include_opted_out``) for ``user``.

    Raises:
        ExportError: unknown list, unknown column, or a filter the list needs but lacks.
    """
    definition = get(name)
    wanted = [c.strip() for raw in _getlist(params, "columns") for c in (raw or "").split(",") if c.strip()]
    unknown = [c for c in wanted if c not in definition.headers]
    if unknown:
        raise ExportError(f"Unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for {name}; "
                          f"choose from: {', '.join(definition.headers)}.")
    columns = list(dict.fromkeys(wanted)) or list(definition.headers)
    include = _truthy(_first(params, "include_opted_out"))
    if definition.customer_type and _first(params, "consent") == "opted_out":
        include = True  # asking for the opted-out customers by name means exporting them
    export = Export(definition, params, user, columns, include, filter_string(definition, params))
    definition.query(params, user)  # raises ExportError early for a missing required filter
    return export


def count(name: str, params: Mapping, user) -> int:
    """How many rows an export of list ``name`` with ``params`` would hold (saved segments' size)."""
    return prepare(name, params, user).count()


# --- cell formatting ---------------------------------------------------------------------------

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


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


# --- writers -----------------------------------------------------------------------------------

def csv_chunks(export: Export, on_finish: Callable[[int, bool], None] | None = None,
               chunk_rows: int = 1000) -> Iterator[str]:
    """The CSV as text chunks: the header at once, then ``chunk_rows`` rows per chunk.

    ``on_finish(rows, completed)`` runs when the stream ends (completed=False when the client
    went away or an error stopped it), so the audit entry records the rows actually written.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    written, completed = 0, False
    rows = export.cells()
    try:
        writer.writerow(export.columns)
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
        cell = csv_cell
        for row in rows:
            writer.writerow([cell(v) for v in row])
            written += 1
            if written % chunk_rows == 0:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        tail = buf.getvalue()
        if tail:
            yield tail
        completed = True
    finally:
        rows.close()  # release the cursor before the audit entry is committed
        if on_finish is not None:
            on_finish(written, completed)


def write_xlsx(export: Export, fileobj) -> int:
    """Write the export as an XLSX workbook (openpyxl write-only) to ``fileobj``; returns the row count.

    Raises:
        ExportError: the list has more rows than a worksheet holds (count checked before writing).
    """
    from openpyxl import Workbook

    total = export.count()
    if total > XLSX_MAX_ROWS:
        raise ExportError(f"This list has {total:,} rows, more than an Excel sheet holds "
                          f"({XLSX_MAX_ROWS:,} + header). Export it as CSV instead (format=csv), "
                          f"or narrow the filter.")
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(export.definition.name[:31])
    sheet.append(export.columns)
    written = 0
    for row in export.cells():
        sheet.append([xlsx_cell(v) for v in row])
        written += 1
    workbook.save(fileobj)
    return written


def record_export(export: Export, fmt: str, rows: int, source: str = "web", completed: bool = True,
                  user_email: str | None = None) -> None:
    """Write the export to the audit log (who, which list, which filter, how many rows) and commit."""
    detail = {"list": export.definition.name, "filter": export.filter, "format": fmt, "rows": rows,
              "columns": export.columns if export.columns != list(export.definition.headers) else "all",
              "include_opted_out": export.include_opted_out, "source": source}
    if not completed:
        detail["completed"] = False
    audit.record("export", export.definition.name, detail, user_email)
    db.session.commit()


def filename(export: Export, fmt: str) -> str:
    """A download name like ``customers-20260121-1405.csv`` (UTC)."""
    return f"{export.definition.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M}.{fmt}"
