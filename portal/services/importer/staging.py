"""Staging: one file's typed rows go into TEMP tables on the import's own connection.

TEMP tables are private to the connection, so nothing is visible to anyone until the merge
commits, and on SQLite writing them takes no lock on the main database (progress can still be
recorded while a file is staged). PostgreSQL loads with ``COPY``; SQLite with ``executemany``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection

from preprocessing.columns import ERROR_COLUMNS

# Table name -> (column, SQL type). Lengths match the real tables so PostgreSQL never sees an over-long value.
TABLES: dict[str, list[tuple[str, str]]] = {
    "_stage_lines": [
        ("customer_ext", "VARCHAR(64)"),
        ("txn_ref", "VARCHAR(100)"),
        ("product_ext", "VARCHAR(64)"),
        ("line_no", "INTEGER"),
        ("store_id", "INTEGER"),
        ("purchased_at", "TIMESTAMP"),
        ("quantity", "NUMERIC(14,3)"),
        ("unit_price", "NUMERIC(14,4)"),
        ("amount", "NUMERIC(14,2)"),
        ("coupon_code", "VARCHAR(40)"),
    ],
    # Distinct per chunk (so a few rows per product / customer, not one per line): cheap to group at merge time.
    "_stage_products": [("product_ext", "VARCHAR(64)"), ("product_name", "VARCHAR(300)")],
    "_stage_custs": [
        ("customer_ext", "VARCHAR(64)"),
        ("phone", "VARCHAR(20)"),
        ("store_id", "INTEGER"),
        ("src_row", "INTEGER"),
    ],
    "_stage_stock": [
        ("src_row", "INTEGER"),
        ("product_ext", "VARCHAR(64)"),
        ("product_name", "VARCHAR(300)"),
        ("initial_stock", "NUMERIC(14,3)"),
        ("total_sold", "NUMERIC(14,3)"),
        ("price", "NUMERIC(14,4)"),
        ("store_id", "INTEGER"),
    ],
    "_stage_customers": [
        ("src_row", "INTEGER"),
        ("customer_ext", "VARCHAR(64)"),
        ("name", "VARCHAR(200)"),
        ("phone", "VARCHAR(20)"),
        ("email", "VARCHAR(254)"),
        ("store_id", "INTEGER"),
        ("consent", "VARCHAR(3)"),
        ("consent_at", "TIMESTAMP"),
        ("birthday", "DATE"),
    ],
    "_stage_problems": [
        ("src_row", "INTEGER"),
        ("col", "VARCHAR(100)"),
        ("value", "VARCHAR(200)"),
        ("reason", "VARCHAR(300)"),
        ("severity", "VARCHAR(8)"),
    ],
}
TABLES_FOR_KIND = {
    "transactions": ("_stage_lines", "_stage_products", "_stage_custs"),
    "stock": ("_stage_stock",),
    "customers": ("_stage_customers",),
}
INDEXES = {
    "_stage_products": ["product_ext"],
    "_stage_custs": ["customer_ext"],
    "_stage_stock": ["product_ext"],
    "_stage_customers": ["customer_ext"],
}
MAX_LISTED_PROBLEMS = 200_000  # every problem is counted; this many are kept for the page and the CSV
LIMIT = 1e9  # larger quantities or amounts are typing mistakes (and would overflow NUMERIC(14, 2))


def create_tables(conn: Connection, kind: str) -> None:
    """Create the kind's staging tables and the problems table (dropped again at commit / rollback)."""
    pg = conn.dialect.name == "postgresql"
    for name in (*TABLES_FOR_KIND[kind], "_stage_problems"):
        if not pg:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{name}")
        cols = ", ".join(f'"{c}" {t}' for c, t in TABLES[name])
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} ({cols})" + (" ON COMMIT DROP" if pg else ""))


def index_tables(conn: Connection, kind: str) -> None:
    """Index the staged keys once loading is done (cheaper than maintaining them while loading)."""
    for table in TABLES_FOR_KIND[kind]:
        for col in INDEXES.get(table, ()):
            conn.exec_driver_sql(f"CREATE INDEX ix{table}_{col} ON {table} ({col})")
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"ANALYZE {table}")


def drop_tables(conn: Connection, kind: str) -> None:
    """SQLite keeps TEMP tables for the pooled connection's life: drop them explicitly."""
    if conn.dialect.name != "postgresql":
        for name in (*TABLES_FOR_KIND[kind], "_stage_problems"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{name}")


def load(conn: Connection, table: str, frame: pd.DataFrame) -> None:
    """Append ``frame`` (columns in TABLES order) to a staging table: COPY on PostgreSQL, executemany elsewhere."""
    if frame.empty:
        return
    names = [c for c, _ in TABLES[table]]
    frame = frame[names]
    if conn.dialect.name == "postgresql":
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False, header=False, quoting=csv.QUOTE_MINIMAL)  # ISO dates, NaN -> NULL
        cursor = conn.connection.driver_connection.cursor()
        quoted = ", ".join(f'"{c}"' for c in names)
        with cursor.copy(f"COPY {table} ({quoted}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(buffer.getvalue())
        cursor.close()
        return
    data = {}
    for name in names:
        col = frame[name]
        if pd.api.types.is_datetime64_any_dtype(col):
            # SQLAlchemy's SQLite storage format, so ORM reads and string comparisons agree.
            text = np.datetime_as_string(col.to_numpy(dtype="datetime64[us]"), unit="us")
            data[name] = pd.Series(np.char.replace(text.astype(str), "T", " "), index=col.index).where(
                col.notna(), None
            )
        else:
            data[name] = col.astype(object).where(col.notna(), None)
    rows = list(zip(*(data[n].tolist() for n in names)))
    marks = ", ".join("?" for _ in names)
    conn.exec_driver_sql(f"INSERT INTO {table} VALUES ({marks})", rows)


@dataclass
class Context:
    """What the chunk checks need to know about the run: stores, the user's limits, the layout."""

    kind: str
    mapping: dict
    store_id: int
    store_name: str
    stores: dict[str, int]  # case-folded store name -> id
    store_names: list[str] = field(default_factory=list)
    only_store_id: int | None = None
    # Store id -> the latest purchase wall time accepted (the store's local now plus a day's margin).
    date_limits: dict[int, datetime] = field(default_factory=dict)
    listed_problems: int = 0
    counts: dict = field(default_factory=lambda: {"total": 0, "valid": 0, "anonymous": 0, "problems": 0})


class _Rejects:
    """Problems found by the importer itself, in the report's shape (row, column, field, value, reason, level)."""

    def __init__(self, clean: pd.DataFrame, mapping: dict):
        self.clean, self.mapping = clean, mapping
        self.bad = pd.Series(False, index=clean.index)
        self.parts: list[pd.DataFrame] = []

    def add(self, mask: pd.Series, target: str, reason: str, level: str = "error", values=None) -> None:
        mask = mask.fillna(False).astype(bool)
        if not mask.any():
            return
        if level == "error":
            self.bad |= mask
        shown = (values if values is not None else self.clean[target])[mask]
        self.parts.append(
            pd.DataFrame(
                {
                    "row": self.clean.loc[mask, "source_row"].to_numpy(),
                    "column": self.mapping.get(target, target),
                    "field": target,
                    "value": shown.astype(object).to_numpy(),
                    "reason": reason,
                    "level": level,
                }
            )
        )


def _too_long(r: _Rejects, target: str, limit: int, truncate: bool = False) -> None:
    col = r.clean[target]
    over = col.notna() & col.astype(str).str.len().gt(limit)
    if not over.any():
        return
    if truncate:
        r.add(
            over,
            target,
            f"longer than {limit} characters (cut to {limit})",
            level="warning",
            values=col.astype(str).str.slice(0, 60) + "…",
        )
        r.clean.loc[over, target] = col[over].astype(str).str.slice(0, limit)
    else:
        r.add(over, target, f"longer than {limit} characters", values=col.astype(str).str.slice(0, 60) + "…")


def _resolve_stores(r: _Rejects, ctx: Context) -> pd.Series:
    names = r.clean["store"] if "store" in r.clean else pd.Series(np.nan, index=r.clean.index)
    codes, uniques = pd.factorize(names)  # codes -1 where empty
    found = np.array([ctx.stores.get(str(u).strip().casefold(), -1) for u in uniques] + [ctx.store_id], dtype="int64")
    ids = pd.Series(found[codes], index=names.index)  # index -1 picks the run's store for empty cells
    unknown = ids.eq(-1)
    if unknown.any():
        known = ", ".join(ctx.store_names)
        r.add(unknown, "store", f"unknown store (create it under Admin → Stores first; known: {known})")
    ids = ids.mask(unknown, ctx.store_id)
    if ctx.only_store_id is not None:
        r.add(ids.ne(ctx.only_store_id) & ~unknown, "store", f"you can import only into your store {ctx.store_name!r}")
    return ids


def _future(r: _Rejects, ctx: Context, store_ids: pd.Series) -> None:
    """Refuse lines dated after their store's local now plus a day: one typo would age every customer."""
    if not ctx.date_limits:
        return
    limits = pd.to_datetime(store_ids.map(ctx.date_limits))
    dates = r.clean["purchase_date"]
    r.add(
        dates.notna() & limits.notna() & dates.gt(limits),
        "purchase_date",
        "purchase date in the future (later than the store's current time plus one day)",
    )


def _bounded(r: _Rejects, targets: tuple[str, ...]) -> None:
    for target in targets:
        if target in r.clean:
            r.add(r.clean[target].abs().ge(LIMIT), target, "value out of range (1,000,000,000 or more)")


def prepare(clean: pd.DataFrame, ctx: Context) -> tuple[dict[str, pd.DataFrame], list[pd.DataFrame]]:
    """The importer's own checks on a validated chunk (stores, lengths, ranges) and its staging frames.

    Returns:
        ({staging table: rows}, extra problem frames in ERROR_COLUMNS shape). The first table is the
        kind's main one (one row per valid file row).
    """
    r = _Rejects(clean, ctx.mapping)
    store_ids = _resolve_stores(r, ctx)
    if ctx.kind == "transactions":
        for target, limit in (("customer_id", 64), ("transaction_id", 100), ("product_id", 64), ("coupon_code", 40)):
            _too_long(r, target, limit)
        _too_long(r, "product_name", 300, truncate=True)
        _bounded(r, ("quantity", "price_per_unit", "total_amount"))
        _future(r, ctx, store_ids)
        c = r.clean.loc[~r.bad]
        ids = store_ids[~r.bad]
        lines = pd.DataFrame(
            {
                "customer_ext": c["customer_id"],
                "txn_ref": c["transaction_id"],
                "product_ext": c["product_id"],
                "line_no": c["line_no"],
                "store_id": ids,
                "purchased_at": c["purchase_date"],
                "quantity": c["quantity"].round(3),
                "unit_price": c["price_per_unit"].round(4),
                "amount": c["total_amount"].round(2),
                "coupon_code": c["coupon_code"],
            }
        )
        products = (
            pd.DataFrame({"product_ext": c["product_id"], "product_name": c["product_name"]})
            .sort_values("product_name", na_position="first")
            .drop_duplicates("product_ext", keep="last")
        )
        known = c["customer_id"].notna()
        custs = (
            pd.DataFrame(
                {"customer_ext": c["customer_id"], "phone": c["phone"], "store_id": ids, "src_row": c["source_row"]}
            )[known]
            .sort_values("phone", na_position="first")
            .drop_duplicates("customer_ext", keep="last")
        )
        return {"_stage_lines": lines, "_stage_products": products, "_stage_custs": custs}, r.parts
    elif ctx.kind == "stock":
        _too_long(r, "product_id", 64)
        _too_long(r, "product_name", 300, truncate=True)
        _bounded(r, ("initial_stock", "total_sold", "price"))
        c = r.clean
        out = {
            "_stage_stock": pd.DataFrame(
                {
                    "src_row": c["source_row"],
                    "product_ext": c["product_id"],
                    "product_name": c["product_name"],
                    "initial_stock": c["initial_stock"].round(3),
                    "total_sold": c["total_sold"].round(3),
                    "price": c["price"].round(4),
                    "store_id": store_ids,
                }
            )
        }
    else:
        _too_long(r, "customer_id", 64)
        _too_long(r, "name", 200, truncate=True)
        long_email = r.clean["email"].notna() & r.clean["email"].astype(str).str.len().gt(254)
        r.add(long_email, "email", "e-mail address longer than 254 characters (customer kept without it)", "warning")
        r.clean.loc[long_email, "email"] = None
        c = r.clean
        no_date = c["sms_consent"].eq("yes") & c["sms_consent_date"].isna()
        r.add(
            no_date,
            "sms_consent",
            "sms_consent yes without a date: recorded as opted in at the import's time",
            level="warning",
        )
        out = {
            "_stage_customers": pd.DataFrame(
                {
                    "src_row": c["source_row"],
                    "customer_ext": c["customer_id"],
                    "name": c["name"],
                    "phone": c["phone"],
                    "email": c["email"],
                    "store_id": store_ids,
                    "consent": c["sms_consent"],
                    "consent_at": c["sms_consent_date"],
                    # ISO text ('1990-05-01'): a DATE for COPY, and SQLAlchemy's own Date format on SQLite.
                    "birthday": c["birthday"].dt.strftime("%Y-%m-%d") if "birthday" in c else None,
                }
            )
        }
    return {table: frame.loc[~r.bad] for table, frame in out.items()}, r.parts


def stage_problems(conn: Connection, ctx: Context, parts: list[pd.DataFrame]) -> None:
    """Count every problem, keep the first MAX_LISTED_PROBLEMS for the page and the CSV download."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return
    frame = pd.concat(parts, ignore_index=True)[ERROR_COLUMNS]
    ctx.counts["problems"] += len(frame)
    room = MAX_LISTED_PROBLEMS - ctx.listed_problems
    if room <= 0:
        return
    frame = frame.sort_values("row", kind="stable").head(room)
    ctx.listed_problems += len(frame)
    value = frame["value"].astype(object).where(frame["value"].notna(), "").astype(str)
    load(
        conn,
        "_stage_problems",
        pd.DataFrame(
            {
                "src_row": frame["row"].astype("int64"),
                "col": frame["column"].astype(str).str.slice(0, 100),
                "value": value.str.slice(0, 200),
                "reason": frame["reason"].astype(str).str.slice(0, 300),
                "severity": frame["level"].astype(str),
            }
        ),
    )
