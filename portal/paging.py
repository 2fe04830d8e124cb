"""A list page for the current request: the keyset page its ``after=`` names, and links to its neighbours.

The web half of ``portal.services.lists.paging`` (which runs the queries without knowing of requests).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flask import abort, request, url_for

from portal.services.lists import exports, registry
from portal.services.lists import paging as keyset


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
    def from_request(
        cls, query, key, sort=None, descending: bool = False, size: int | None = None, scalars: bool = True
    ) -> Page:
        """Run ``query`` for the page named by the request's ``after`` parameter.

        Args:
            query: a ``select()``; it must not be ordered yet.
            key: the unique tie-breaker column (usually the primary key).
            sort: the column (or SQL expression, with ``scalars=True``) users sort by; None: key only.
                NULLs sort last.
            descending: sort direction.
            scalars: True when the query selects one entity (items are entities); False for
                multi-column rows (items are rows; ``sort`` must then be a column of the first entity).
        """
        size = size or keyset.PAGE_SIZE
        try:
            cursor = keyset.parse_cursor(request.args.get("after"), key, sort)
        except keyset.BadCursor:  # a hand-edited link: a 400, never a database error (a 500)
            abort(400)
        fetch = keyset.fetch_keyset if scalars else keyset.fetch_rows
        items, nxt = fetch(query, key, sort, descending, size, cursor)
        next_url = None
        if nxt is not None:
            args = {**request.args.to_dict(), "after": json.dumps(nxt)}
            next_url = url_for(request.endpoint, **(request.view_args or {}), **args)
        first_args = {k: v for k, v in request.args.to_dict().items() if k != "after"}
        prev_url = url_for(request.endpoint, **(request.view_args or {}), **first_args) if cursor else None
        label = f"{len(items):,} shown" + (" · more on the next page" if nxt is not None else "")
        return cls(items, nxt is not None, cursor is not None, next_url, prev_url, label)


def list_page(name: str, params: Mapping, user, size: int | None = None, options: Sequence = ()) -> Page:
    """The keyset ``Page`` of list ``name`` for the current request (filters, sort, store scoping).

    ``options``: loader options for the list's entity, e.g. ``load_only`` of the columns the page shows.
    """
    definition = registry.get(name)
    sort, descending, _ = exports.sort_of(definition, params)
    query = definition.query(params, user)
    if options:
        query = query.options(*options)
    return Page.from_request(query, key=definition.key, sort=sort, descending=descending, size=size)
