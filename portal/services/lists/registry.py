"""The registry of lists (``LISTS``) and the query-string filters every list understands.

A list is registered once with a ``ListDef``; pages, exports, saved segments and the ``flask export``
command then find it by name with ``get``. Filters arrive as query-string params (a page request)
or as a filter string (``--filter``, a saved segment); both are read the same way here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from werkzeug.datastructures import MultiDict

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


def first_value(params: Mapping, key: str) -> str:
    value = params.get(key)
    return (value or "").strip() if isinstance(value, str) else ""


def all_values(params: Mapping, key: str) -> list[str]:
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
    pairs = [(k, first_value(params, k)) for k in (*definition.filter_keys, "sort") if first_value(params, k)]
    return urlencode(pairs)


def truthy(value: str) -> bool:
    return value.lower() in {"1", "true", "yes", "on", "y"}
