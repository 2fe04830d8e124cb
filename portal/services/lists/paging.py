"""Keyset pagination shared by every list page: never loads all rows, stays fast at 1M rows.

A page is ordered by (sort value, id); the next page starts after the last row's pair, passed
in the query string as ``after=[<value>, <id>]`` (values are opaque to users). NULL sort values
come last, in id order.

Why two queries instead of one ``ORDER BY (col IS NULL), col, id``: that expression cannot use
an index on ``col``, so every page would sort the whole table. Here the non-NULL part is read as
``WHERE col >= :v AND (col > :v OR id > :id) ORDER BY col, id`` (an index range scan on ``col``)
and, when it runs out, the NULL part as ``WHERE col IS NULL AND id > :id ORDER BY id``.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.sql.elements import ColumnElement

from portal.extensions import db

PAGE_SIZE = 50


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, Decimal):
        return {"dec": str(value)}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "dt" in value and isinstance(value["dt"], str):
        return datetime.fromisoformat(value["dt"])
    if isinstance(value, dict) and "dec" in value and isinstance(value["dec"], str):
        return Decimal(value["dec"])
    return value


class BadCursor(ValueError):
    """An ``after`` cursor that no page of this list produced (edited by hand or cut short)."""


INT64 = (-(2**63), 2**63 - 1)


def parse_cursor(raw: str | None, key=None, sort=None) -> list | None:
    """The ``after`` cursor as [sort value, key] (sort value still encoded), or None when absent.

    Raises ``BadCursor`` when it is malformed or its values do not fit ``key`` / ``sort`` (a 64-bit
    integer id, a date for a date column...): the database would refuse it with an error, not a page.
    """
    if not raw:
        return None
    try:
        cursor = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadCursor("not JSON") from None
    if not isinstance(cursor, list) or len(cursor) != 2:
        raise BadCursor("not a pair")
    if key is not None:
        _check_value(cursor[1], key, nullable=False)
    if sort is not None:
        try:
            _check_value(_decode(cursor[0]), sort, nullable=True)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise BadCursor(str(exc)) from None
    elif cursor[0] is not None:
        raise BadCursor("a sort value on an unsorted list")
    return cursor


def _python_type(column) -> type | None:
    try:
        return column.type.python_type
    except (NotImplementedError, AttributeError):
        return None


def _check_value(value, column, nullable: bool) -> None:
    """Refuse a cursor value of the wrong kind for ``column`` (ints within 64 bits, finite numbers)."""
    if value is None:
        if nullable:
            return
        raise BadCursor("no key")
    wanted = _python_type(column)
    if isinstance(value, (dict, list)) or (isinstance(value, bool) and wanted is not bool):
        raise BadCursor("not a plain value")
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:  # no driver binds it (SQLite, psycopg)
        raise BadCursor("number out of range")
    if wanted is int:
        if not isinstance(value, int):
            raise BadCursor("not an integer")
    elif wanted in (float, Decimal):
        if not isinstance(value, (int, float, Decimal)) or not Decimal(value).is_finite() or abs(value) > 1e300:
            raise BadCursor("not a finite number")
    elif wanted is datetime:
        if not isinstance(value, datetime):
            raise BadCursor("not a date and time")
    elif wanted is str:
        if not isinstance(value, str):
            raise BadCursor("not text")
    elif wanted is not None and not isinstance(value, wanted):
        raise BadCursor("wrong type")


def _after(sort: ColumnElement, key, sval, kval, descending: bool):
    """Rows strictly after (sval, kval) among rows whose sort value is not NULL (index-friendly)."""
    if descending:
        return and_(sort <= sval, or_(sort < sval, key < kval))
    return and_(sort >= sval, or_(sort > sval, key > kval))


def fetch_keyset(
    query, key, sort=None, descending: bool = False, size: int = PAGE_SIZE, cursor: list | None = None
) -> tuple[list, list | None]:
    """One page of ORM entities after ``cursor``; returns (items, cursor of the next page or None).

    Args:
        query: a ``select(Entity)`` (filters applied, not ordered); items are the entities.
        key: the unique tie-breaker column (usually the primary key).
        sort: a column or SQL expression to sort by (None: ``key`` only). NULLs sort last.
        cursor: [sort value, key value] of the last row of the previous page, or None.
    """
    kdir = key.desc() if descending else key.asc()
    if sort is None:
        if cursor is not None:
            query = query.where(key < cursor[1] if descending else key > cursor[1])
        items = db.session.scalars(query.order_by(kdir).limit(size + 1)).all()
        nxt = [None, getattr(items[size - 1], key.key)] if len(items) > size else None
        return list(items[:size]), nxt

    sort_label = sort.label("_sort_value")
    rows: list[tuple[Any, Any]] = []  # (entity, sort value)
    in_nulls = cursor is not None and _decode(cursor[0]) is None
    if not in_nulls:
        q = query.add_columns(sort_label).where(sort.isnot(None))
        if cursor is not None:
            q = q.where(_after(sort, key, _decode(cursor[0]), cursor[1], descending))
        sdir = sort.desc() if descending else sort.asc()
        rows = [(r[0], r[1]) for r in db.session.execute(q.order_by(sdir, kdir).limit(size + 1))]
    if len(rows) <= size:
        q = query.add_columns(sort_label).where(sort.is_(None))
        if in_nulls:
            q = q.where(key < cursor[1] if descending else key > cursor[1])
        rows += [(r[0], r[1]) for r in db.session.execute(q.order_by(kdir).limit(size + 1 - len(rows)))]
    nxt = None
    if len(rows) > size:
        last, sval = rows[size - 1]
        nxt = [_encode(sval), getattr(last, key.key)]
    return [r[0] for r in rows[:size]], nxt


def fetch_rows(query, key, sort, descending, size, cursor):
    """Keyset page of multi-column rows (items keep their row shape: ``for a, b in page.items``)."""
    if cursor is not None:
        sval, kval = _decode(cursor[0]), cursor[1]
        if sort is None:
            query = query.where(key < kval if descending else key > kval)
        elif sval is None:  # NULLs come last: continue within NULLs
            query = query.where(and_(sort.is_(None), key < kval if descending else key > kval))
        else:
            query = query.where(or_(_after(sort, key, sval, kval, descending), sort.is_(None)))
    order = []
    if sort is not None:
        order += [sort.is_(None), sort.desc() if descending else sort.asc()]
    order.append(key.desc() if descending else key.asc())
    rows = db.session.execute(query.order_by(*order).limit(size + 1)).all()
    nxt = None
    if len(rows) > size:
        last = rows[size - 1][0]
        sval = getattr(last, sort.key) if sort is not None else None
        nxt = [_encode(sval), getattr(last, key.key)]
    return rows[:size], nxt
