"""Keyset pagination shared by every list page: never loads all rows, stays fast at 1M rows.

A page is ordered by (sort column, id); the next page starts after the last row's pair, passed
in the query string as ``after=<value>|<id>`` (values are opaque to users).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import request, url_for
from sqlalchemy import and_, or_

from portal.extensions import db

PAGE_SIZE = 50


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, Decimal):
        return {"dec": str(value)}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "dt" in value:
        return datetime.fromisoformat(value["dt"])
    if isinstance(value, dict) and "dec" in value:
        return Decimal(value["dec"])
    return value


@dataclass
class Page:
    """One page of a keyset-paginated query plus the links to its neighbours."""

    items: list
    has_next: bool
    has_prev: bool
    next_url: str | None
    prev_url: str | None
    label: str

    @classmethod
    def from_request(cls, query, key, sort=None, descending: bool = False, size: int = PAGE_SIZE,
                     scalars: bool = True) -> "Page":
        """Run ``query`` for the page named by the request's ``after`` parameter.

        Args:
            query: a ``select()``; it must not be ordered yet.
            key: the unique tie-breaker column (usually the primary key).
            sort: the column users sort by (None: key only). NULLs sort last.
            descending: sort direction.
        """
        after_raw = request.args.get("after")
        cursor = None
        if after_raw:
            try:
                cursor = json.loads(after_raw)
                if not isinstance(cursor, list) or len(cursor) != 2:
                    cursor = None
            except ValueError:
                cursor = None
        cols = [sort, key] if sort is not None else [key]
        if cursor is not None:
            sval, kval = _decode(cursor[0]), cursor[1]
            if sort is None:
                query = query.where(key < kval if descending else key > kval)
            elif sval is None:  # NULLs come last: continue within NULLs
                query = query.where(and_(sort.is_(None), key < kval if descending else key > kval))
            else:
                after_val = (sort < sval) if descending else (sort > sval)
                tie = and_(sort == sval, key < kval if descending else key > kval)
                query = query.where(or_(after_val, tie, sort.is_(None)))
        order = []
        for c in cols:
            if c is sort and sort is not None:
                order.append(sort.is_(None))  # NULLs last on every backend
            order.append(c.desc() if descending else c.asc())
        rows = (db.session.scalars if scalars else db.session.execute)(query.order_by(*order).limit(size + 1)).all()
        has_next = len(rows) > size
        rows = rows[:size]
        next_url = None
        if has_next and rows:
            last = rows[-1] if scalars else rows[-1][0]
            sval = getattr(last, sort.key) if sort is not None else None
            kval = getattr(last, key.key)
            args = {**request.args.to_dict(), "after": json.dumps([_encode(sval), kval])}
            next_url = url_for(request.endpoint, **(request.view_args or {}), **args)
        first_args = {k: v for k, v in request.args.to_dict().items() if k != "after"}
        prev_url = url_for(request.endpoint, **(request.view_args or {}), **first_args) if cursor else None
        label = f"{len(rows)} shown" + (" · more on the next page" if has_next else "")
        return cls(rows, has_next, cursor is not None, next_url, prev_url, label)
