"""Customer search by prefix: partial ids, names, e-mails and phone numbers, case-insensitive, from an index.

"c0235" finds C02351, "mar" finds Maria Lopez, "+1555" and "555" find +15551234567. Each key is a column
the database generates (``Customer.search_*``: lower-case id, name, e-mail; the phone's digits) with a b-tree
index, and a prefix is read as the index range ``prefix <= key < successor(prefix)``:

* on SQLite the indexes use the BINARY collation, so the range is a plain ``>=`` / ``<``;
* on PostgreSQL the indexes use ``text_pattern_ops`` (byte order, whatever the database's collation), so
  the range uses that operator class's ``~>=~`` / ``~<~``. Unlike ``LIKE :pattern``, a range keeps using the
  index in a prepared statement's generic plan (psycopg prepares a query after five runs).

Both are exactly "starts with" for UTF-8 text. At 1M customers a search is four index range scans
(``bench``-style figures in the report of issue #21), never a table scan.
"""

from __future__ import annotations

import re

import phonenumbers
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import aliased

from portal.extensions import db
from portal.models import Customer, Store

MAX_CHARS = 100
SPARSE = 2000  # SQLite: fewer matches than this are read as an id list (see ``condition``)
# Text that reads as a phone number: digits with the usual separators, at least three digits.
_PHONE = re.compile(r"^\+?[\d\s().\-/]{3,}$")
_MAX_CODEPOINT = 0x10FFFF


def successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: no upper bound)."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < _MAX_CODEPOINT:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates are not characters
                nxt = 0xE000
            return "".join(chars) + chr(nxt)
    return None


def starts_with(column, prefix: str):
    """SQL for "``column`` starts with ``prefix``" that an index range scan answers (see the module doc)."""
    upper = successor(prefix)
    if _dialect() == "postgresql":
        lower_cond = column.op("~>=~", is_comparison=True)(prefix)
        upper_cond = column.op("~<~", is_comparison=True)(upper) if upper is not None else None
    else:
        lower_cond = column >= prefix
        upper_cond = column < upper if upper is not None else None
    return lower_cond if upper_cond is None else and_(lower_cond, upper_cond)


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def phone_prefixes(text: str) -> list[str]:
    """Digit prefixes of E.164 numbers (without the +) that ``text`` may begin.

    "+1 555" is international: 1555. "555" or "(555) 12" is national, so each store's country code is put in
    front (1555 for US stores), and the digits are also tried as they are (someone typing 4477 for +4477...).
    A national trunk 0 ("07700 9") is dropped after the country code (447700 9...).
    """
    text = text.strip()
    if not _PHONE.match(text):
        return []
    digits = re.sub(r"\D", "", text)
    if not digits:
        return []
    if text.startswith("+") or text.startswith("00"):
        return [digits[2:] if text.startswith("00") else digits]
    prefixes = [digits]
    national = digits.lstrip("0") or digits
    for region in _store_regions():
        code = phonenumbers.country_code_for_region(region)
        if code:
            candidate = f"{code}{national}"
            if candidate not in prefixes:
                prefixes.append(candidate)
    return prefixes


def _store_regions() -> list[str]:
    """The phone regions of the chain's stores (a handful of rows), US when there is no store yet."""
    regions = sorted({r for r in db.session.scalars(select(Store.phone_region)) if r})
    return regions or ["US"]


def name_variants(lowered: str) -> list[str]:
    """The lower-cased text as the database's ``lower(name)`` may hold it.

    PostgreSQL lowers every letter; SQLite's ``lower()`` only A-Z, so "Édith" is stored "Édith": there the
    text is also tried with the non-ASCII letters that start a word in capitals ("édith" -> "Édith").
    """
    if _dialect() != "sqlite" or lowered.isascii():
        return [lowered]
    capitalised = re.sub(r"(?:^|(?<=[\s'-]))([^\x00-\x7f])", lambda m: m.group(1).upper(), lowered)
    return [lowered] if capitalised == lowered else [lowered, capitalised]


def condition(q: str):
    """The WHERE clause for a search box's text ``q`` (already stripped; non-empty): any key starting with it.

    SQLite needs help to plan a list page (``ORDER BY id LIMIT ?``): with a bound limit it walks the table in
    id order and checks each row, which is quick when matches are common ("c") and a full scan when they are
    rare (0.9 s at 1M customers for one match). So a probe counts up to ``SPARSE`` matches through the
    indexes (under a millisecond); when there are fewer, the matches are given as an id list
    (``id IN (SELECT id ...)``), which SQLite reads in id order from the indexes: a few milliseconds.
    PostgreSQL weighs its statistics itself (a bitmap OR of the index ranges, or the id order).
    """
    if _dialect() == "sqlite":
        match = aliased(Customer, name="search_match")
        probe = select(func.count()).select_from(select(match.id).where(_matches(match, q)).limit(SPARSE).subquery())
        if db.session.scalar(probe) < SPARSE:
            return Customer.id.in_(select(match.id).where(_matches(match, q)))
    return _matches(Customer, q)


def _matches(entity, q: str):
    q = q[:MAX_CHARS]
    lowered = q.lower()
    conditions = [starts_with(entity.search_id, lowered), starts_with(entity.search_email, lowered)]
    conditions += [starts_with(entity.search_name, v) for v in name_variants(lowered)]
    conditions += [starts_with(entity.search_phone, p) for p in phone_prefixes(q)]
    return or_(*conditions)
