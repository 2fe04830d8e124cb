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
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Customer
from portal.services import audit
from portal.services.lists import definitions  # noqa: F401  (importing it registers the lists)
from portal.services.lists.cells import csv_cell, xlsx_cell
from portal.services.lists.registry import ExportError, ListDef, all_values, filter_string, first_value, get, truthy

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


def write_xlsx(export: Export, fileobj) -> int:
    """Write the export as an XLSX workbook (openpyxl write-only) to ``fileobj``; returns the row count.

    Raises:
        ExportError: the list has more rows than a worksheet holds (count checked before writing).
    """
    from openpyxl import Workbook

    total = export.count()
    if total > XLSX_MAX_ROWS:
        raise ExportError(
            f"This list has {total:,} rows, more than an Excel sheet holds "
            f"({XLSX_MAX_ROWS:,} + header). Export it as CSV instead (format=csv), "
            f"or narrow the filter."
        )
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(export.definition.name[:31])
    sheet.append(export.columns)
    written = 0
    for row in export.cells():
        sheet.append([xlsx_cell(v) for v in row])
        written += 1
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
