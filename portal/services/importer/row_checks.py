"""PostgreSQL: check the new purchase lines' foreign keys once per referenced row, not once per line.

Why it works this way: docs/design-notes.md#foreign-keys-on-postgresql.
"""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

PER_ROW = "per-row"
SET_BASED = "set-based"


def _lock_parents(conn: Connection, import_id: int) -> bool:
    """Lock the rows the staged lines will reference; False if a store id or the import is missing."""
    stores = conn.execute(text("SELECT array_agg(DISTINCT store_id) FROM _stage_lines")).scalar() or []
    locked_stores = conn.execute(
        text("SELECT count(*) FROM (SELECT id FROM stores WHERE id = ANY(:ids) FOR KEY SHARE) AS s"), {"ids": stores}
    ).scalar()
    locked_import = conn.execute(
        text("SELECT count(*) FROM (SELECT id FROM imports WHERE id = :id FOR KEY SHARE) AS i"), {"id": import_id}
    ).scalar()
    if locked_stores != len(stores) or locked_import != 1:
        return False
    conn.execute(
        text("""SELECT count(*) FROM (SELECT p.id FROM products p
                         WHERE p.external_id IN (SELECT product_ext FROM _stage_products) FOR KEY SHARE OF p) AS p""")
    )
    conn.execute(
        text("""SELECT count(*) FROM (SELECT c.id FROM customers c
                         WHERE c.external_id IN (SELECT customer_ext FROM _stage_custs) FOR KEY SHARE OF c) AS c""")
    )
    return True


def _skip_triggers(conn: Connection) -> bool:
    """Turn off foreign-key triggers for this transaction if the role may; False (nothing changed) if not."""
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
    except DBAPIError:  # insufficient privilege: the savepoint's rollback undid the attempt
        return False
    return True


@contextmanager
def line_checks(conn: Connection, import_id: int):
    """Around the purchase-line INSERT: yields which way the foreign keys are checked (SET_BASED or PER_ROW)."""
    if conn.dialect.name != "postgresql" or not _lock_parents(conn, import_id) or not _skip_triggers(conn):
        yield PER_ROW
        return
    yield SET_BASED
    # Only after a successful insert: a failed one aborts the transaction, whose rollback resets it anyway.
    conn.exec_driver_sql("SET LOCAL session_replication_role = origin")
