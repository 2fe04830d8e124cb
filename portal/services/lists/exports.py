"""One list machinery for every list page, its CSV/XLSX exports and the ``flask export`` command.

A list is registered once (``LISTS``) with: the query built from the query-string filters and the
user (store scoping applied through the services), its sort options, the stable snake_case export
headers (DESIGN.md "Contracts") and a row formatter. Pages get keyset pages from ``portal.paging.list_page``;
``?format=csv|xlsx`` and the CLI get exactly the same rows from ``prepare`` + ``csv_chunks`` /
``write_xlsx``. Every export is audited (action ``export``).

The list registry and filter parsing are in ``registry``, the lists themselves in ``definitions`` and
cell formatting (CSV-injection safety) in ``cells``; this module resolves an export and writes it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from itertools import islice
from typing import Any

from sqlalchemy import func, select

from portal.extensions import db
from portal.formatting import SYMBOLS, fmt_datetime
from portal.models import Customer, Store
from portal.services import audit
from portal.services.customers import customers as customer_service
from portal.services.lists import definitions  # noqa: F401  (importing it registers the lists)
from portal.services.lists.cells import column_format, csv_cell, display_width, typed_xlsx_value
from portal.services.lists.registry import ExportError, ListDef, all_values, filter_string, first_value, get, truthy
from portal.services.summaries import customers as customer_summaries

XLSX_MAX_ROWS = 1_048_575  # Excel's 1,048,576 rows minus the header row
BATCH = 2000  # rows fetched per round trip (server-side cursor on PostgreSQL)


# --- pages -------------------------------------------------------------------------------------


def sort_of(definition: ListDef, params: Mapping) -> tuple[Any, bool, str]:
    """The (sort expression or None, descending, sort key as given) for ``params``' ``sort``."""
    key = first_value(params, "sort") or definition.default_sort
    expr = definition.sorts.get(key.lstrip("-"))
    if expr is None:
        key = definition.default_sort
        expr = definition.sorts.get(key.lstrip("-"))
    return expr, key.startswith("-"), key


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
    wanted = [c.strip() for raw in all_values(params, "columns") for c in (raw or "").split(",") if c.strip()]
    unknown = [c for c in wanted if c not in definition.headers]
    if unknown:
        raise ExportError(
            f"Unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for {name}; "
            f"choose from: {', '.join(definition.headers)}."
        )
    columns = list(dict.fromkeys(wanted)) or list(definition.headers)
    include = truthy(first_value(params, "include_opted_out"))
    if definition.customer_type and first_value(params, "consent") == "opted_out":
        include = True  # asking for the opted-out customers by name means exporting them
    export = Export(definition, params, user, columns, include, filter_string(definition, params))
    definition.query(params, user)  # raises ExportError early for a missing required filter
    return export


def count(name: str, params: Mapping, user) -> int:
    """How many rows an export of list ``name`` with ``params`` would hold (saved segments' size)."""
    return prepare(name, params, user).count()


def sizes(name: str, params: Mapping, user) -> dict:
    """The export's size and, for customer lists that leave opted-out customers out, what that leaves out.

    ``count`` is what an export (and a saved segment's "Size now") holds; ``listed`` is how many the list
    page shows with the same filter, ``opted_out`` the difference, and ``note`` says so in a sentence.
    For the customer lists with filters the stored summary answers (store, tier, band, lifecycle,
    include_lost) the numbers are added up from it and ``as_of`` says when it was computed (ISO, UTC); other
    filters count live (two COUNTs over the filter) and ``as_of`` is None.
    """
    export = prepare(name, params, user)  # ExportError for an unknown list or column
    leaves_out = export.definition.customer_type and not export.include_opted_out
    stored = _stored_sizes(export)
    if stored is not None:
        listed, left_out, stamp = stored
        exported = listed - left_out if leaves_out else listed
    else:
        stamp, exported = None, export.count()
        listed = replace(export, include_opted_out=True).count() if leaves_out else exported
    answer: dict = {"count": exported, "listed": listed, "opted_out": 0, "note": "", "as_of": None}
    if stamp is not None:
        answer["as_of"] = stamp.isoformat()
    if leaves_out:
        left_out = listed - exported
        answer["opted_out"] = left_out
        if left_out:
            answer["note"] = (
                f"{exported:,} can be exported: {left_out:,} opted out "
                f"{'is' if left_out == 1 else 'are'} left out of the {listed:,} on the list"
            )
        else:
            answer["note"] = f"{exported:,} can be exported: nobody on the list has opted out"
        if stamp is not None:
            answer["note"] += f" (counts as of {fmt_datetime(stamp)})"
    return answer


# Customer lists whose rows the stored summary can count: name -> (scored customers only, Lost left out by default).
STORED_COUNTS = {"customers": (False, False), "at-risk": (True, True)}


def _stored_sizes(export: Export) -> tuple[int, int, datetime | None] | None:
    """(listed, opted out among them, as_of) from the stored customer summary, or None when it cannot answer.

    Same rows as the lists' queries (``definitions``): ``customers`` is ``filtered_customers``; ``at-risk``
    adds "has a churn band" and leaves Lost customers out unless ``includes_lost``."""
    definition = export.definition
    if definition.name not in STORED_COUNTS or not definition.customer_type:
        return None
    flat = {key: first_value(export.params, key) or "" for key in definition.filter_keys}
    found = customer_summaries.for_user(export.user, flat)
    if found is None:
        return None
    groups, as_of = found
    scored_only, savable_only = STORED_COUNTS[definition.name]
    if scored_only:
        groups = [g for g in groups if g["churn_band"] is not None]
    if savable_only and not customer_service.includes_lost(flat):
        groups = [g for g in groups if g["lifecycle"] != "Lost"]
    return sum(g["n"] for g in groups), sum(g["n_opted_out"] for g in groups), as_of


# --- writers -----------------------------------------------------------------------------------


def csv_chunks(
    export: Export, on_finish: Callable[[int, bool], None] | None = None, chunk_rows: int = 1000
) -> Iterator[str]:
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


def currency_symbol(user) -> str | None:
    """The currency symbol money columns of ``user``'s exports are shown in: their store's, or the one
    currency every store uses; None when a chain-wide export mixes currencies (plain numbers then)."""
    store_id = getattr(user, "store_id", None) if user is not None else None
    query = select(Store.currency).distinct()
    if store_id is not None and getattr(user, "role", None) != "admin":
        query = query.where(Store.id == store_id)
    codes = [c or "USD" for c in db.session.scalars(query)]
    if len(set(codes)) != 1:
        return None if codes else SYMBOLS["USD"]
    return SYMBOLS.get(codes[0], codes[0] + " ")


def write_xlsx(export: Export, fileobj, sample_rows: int = 200) -> int:
    """Write the export as an XLSX workbook (openpyxl write-only) to ``fileobj``; returns the row count.

    Cells are typed by column (``cells.column_format``): money in the store's currency format, shares as
    percentages, times as dates, identifiers as text. The header row is frozen and filtered; column
    widths fit the header and the first ``sample_rows`` rows, which are held back until the widths are
    known (write-only sheets write their columns before the first row); the rest streams.

    Raises:
        ExportError: the list has more rows than a worksheet holds (count checked before writing).
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    total = export.count()
    if total > XLSX_MAX_ROWS:
        raise ExportError(
            f"This list has {total:,} rows, more than an Excel sheet holds "
            f"({XLSX_MAX_ROWS:,} + header). Export it as CSV instead (format=csv), "
            f"or narrow the filter."
        )
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(export.definition.name[:31])
    symbol = currency_symbol(export.user)
    headers = export.columns
    formats = [column_format(h, symbol) for h in headers]
    rows = export.cells()
    sample = list(islice(rows, sample_rows))
    typed_sample = [[typed_xlsx_value(h, v) for h, v in zip(headers, row)] for row in sample]
    for i, (header, fmt) in enumerate(zip(headers, formats)):
        width = display_width(header, [r[i] for r in typed_sample], fmt)
        sheet.column_dimensions[get_column_letter(i + 1)].width = width
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    header_cells = []
    for header in headers:
        cell = WriteOnlyCell(sheet, value=header)
        cell.font = bold
        header_cells.append(cell)
    sheet.append(header_cells)

    # One styled cell per formatted column, reused for every row: a write-only sheet writes each row out
    # while it is appended, so the cell object is free again at the next row.
    templates = []
    for fmt in formats:
        if fmt is None:
            templates.append(None)
            continue
        cell = WriteOnlyCell(sheet)
        cell.number_format = fmt
        templates.append(cell)

    def styled(values: list) -> list:
        out = []
        for template, value in zip(templates, values):
            if value is None or template is None:
                out.append(value)
            else:
                template.value = value
                out.append(template)
        return out

    written = 0
    try:
        for values in typed_sample:
            sheet.append(styled(values))
            written += 1
        for row in rows:
            sheet.append(styled([typed_xlsx_value(h, v) for h, v in zip(headers, row)]))
            written += 1
    finally:
        rows.close()
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(headers))}{written + 1}"
    workbook.save(fileobj)
    return written


def record_export(
    export: Export, fmt: str, rows: int, source: str = "web", completed: bool = True, user_email: str | None = None
) -> None:
    """Write the export to the audit log (who, which list, which filter, how many rows) and commit."""
    detail = {
        "list": export.definition.name,
        "filter": export.filter,
        "format": fmt,
        "rows": rows,
        "columns": export.columns if export.columns != list(export.definition.headers) else "all",
        "include_opted_out": export.include_opted_out,
        "source": source,
    }
    if not completed:
        detail["completed"] = False
    audit.record("export", export.definition.name, detail, user_email)
    db.session.commit()


def filename(export: Export, fmt: str) -> str:
    """A download name like ``customers-20260121-1405.csv`` (UTC)."""
    return f"{export.definition.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M}.{fmt}"
