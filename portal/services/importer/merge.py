"""Merge staged rows into the real tables with set-based SQL (the same statements on SQLite and PostgreSQL).

Every statement runs inside the import's single transaction; nothing here commits. Natural keys
make re-imports add nothing twice: ``INSERT … ON CONFLICT DO NOTHING`` on products.external_id,
customers.external_id, purchase_lines (transaction_ref, product_id, line_no) and stock_levels
(product_id, store_id). (The ``WHERE 1 = 1`` before ``ON CONFLICT`` is SQLite's required
disambiguation of an upsert fed by a SELECT.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from portal.models import UTCDateTime
from portal.services.importer import row_checks


@dataclass
class Merged:
    """What a merge changed: new rows, rows already present, and details for the summary."""

    new: int = 0
    present: int = 0
    updated: int = 0
    customers_new: int = 0
    consent_changes: int = 0
    line_checks: str | None = None  # purchase lines: how their foreign keys were checked (row_checks)


def _run(conn: Connection, sql: str, **params) -> int:
    statement = text(sql)
    if "now" in params:
        statement = statement.bindparams(bindparam("now", type_=UTCDateTime))
    return conn.execute(statement, params).rowcount or 0


def _products(conn: Connection, table: str, with_price: bool = False) -> None:
    """New products from the staged (product_ext, product_name[, price]) rows; names filled where missing."""
    price_col, price_val = (", price", ", MAX(price)") if with_price else ("", "")
    _run(
        conn,
        f"""
        INSERT INTO products (external_id, name{price_col})
        SELECT product_ext, COALESCE(MAX(product_name), product_ext){price_val} FROM {table}
        WHERE 1 = 1 GROUP BY product_ext
        ON CONFLICT (external_id) DO NOTHING""",
    )
    # A product first seen without a name (e.g. a blank description) gets one when a file names it.
    _run(
        conn,
        f"""
        UPDATE products SET name = s.name
        FROM (SELECT product_ext, MAX(product_name) AS name FROM {table} WHERE product_name IS NOT NULL
              GROUP BY product_ext) AS s
        WHERE s.product_ext = products.external_id AND (products.name = '' OR products.name = products.external_id)
          AND s.name <> products.name""",
    )


OTHER_STORES_CUSTOMER = (
    "customer of another store: a store's file cannot change another store's customers "
    "(name, phone, e-mail, store, consent); ask an admin"
)
PHONE_NOT_SAVED = (
    "phone not saved: this customer's home store is another store, whose details only that store "
    "or an admin changes (the purchase line itself is imported)"
)


def _scoped(only_store_id: int | None, table: str = "customers") -> str:
    """SQL keeping a store user's writes to their own store's customers (empty for admins and the CLI)."""
    return "" if only_store_id is None else f" AND {table}.store_id = {int(only_store_id)}"


def refuse_other_stores_customers(conn: Connection, only_store_id: int, mapping: dict) -> int:
    """A store user's customers file: rows naming another store's customer become problems, not updates.

    Returns how many staged rows were refused (and removed from staging). A customer without a home
    store is not the user's either, so it is refused too.
    """
    col = (mapping.get("customer_id") or "customer_id")[:100]
    foreign = "SELECT c.external_id FROM customers c WHERE c.store_id IS NULL OR c.store_id <> :store"
    _run(
        conn,
        f"""
        INSERT INTO _stage_problems (src_row, col, value, reason, severity)
        SELECT s.src_row, :col, s.customer_ext, :reason, 'error' FROM _stage_customers s
        WHERE s.customer_ext IN ({foreign})""",
        col=col,
        reason=OTHER_STORES_CUSTOMER,
        store=only_store_id,
    )
    return _run(conn, f"DELETE FROM _stage_customers WHERE customer_ext IN ({foreign})", store=only_store_id)


def record_stores(conn: Connection, kind: str, import_id: int, only_store_id: int | None) -> None:
    """Record in import_stores every store whose data this import writes (before the merge moves anyone).

    Transactions: the lines' stores, and (admins) the home stores of customers whose phone or store
    the lines fill. Customers: the stores the rows name and the current home stores of the customers
    they name. Stock: the rows' stores. The history and undo let only users covering all of them in.
    """
    sources = {
        "transactions": ["SELECT store_id FROM _stage_lines"],
        "stock": ["SELECT store_id FROM _stage_stock"],
        "customers": [
            "SELECT store_id FROM _stage_customers",
            """SELECT c.store_id FROM customers c JOIN _stage_customers s
                                ON c.external_id = s.customer_ext""",
        ],
    }[kind]
    if kind == "transactions" and only_store_id is None:
        # The staging table first: SQLite has no statistics for it and otherwise starts from customers
        # through the phone index ("phone IS NULL": every customer without one, 21 ms of a 1,000-line API
        # batch at 100k customers). SQLite's CROSS JOIN keeps the order written; PostgreSQL plans by cost.
        join = "CROSS JOIN" if conn.dialect.name == "sqlite" else "JOIN"
        sources.append(f"""SELECT c.store_id FROM _stage_custs s {join} customers c ON c.external_id = s.customer_ext
                           WHERE s.phone IS NOT NULL AND c.erased_at IS NULL AND c.phone IS NULL""")
    for source in sources:
        _run(
            conn,
            f"""
            INSERT INTO import_stores (import_id, store_id)
            SELECT DISTINCT CAST(:import_id AS INTEGER), store_id FROM ({source}) AS w
            WHERE store_id IS NOT NULL
            ON CONFLICT (import_id, store_id) DO NOTHING""",
            import_id=import_id,
        )


def transactions(
    conn: Connection,
    import_id: int,
    now: datetime,
    valid: int,
    only_store_id: int | None = None,
    mapping: dict | None = None,
) -> Merged:
    """Products, then customers implied by the lines (id, phone, store), then the lines themselves.

    A store user's file (``only_store_id``) adds lines for any customer of the chain but fills no
    detail of another store's customer: their phone is left alone, with a warning on the row.
    """
    _products(conn, "_stage_products")
    created = _run(
        conn,
        """
        INSERT INTO customers (external_id, phone, store_id, sms_consent, created_at)
        SELECT customer_ext, MAX(phone), MIN(store_id), 'unknown', :now FROM _stage_custs
        WHERE 1 = 1 GROUP BY customer_ext
        ON CONFLICT (external_id) DO NOTHING""",
        now=now,
    )
    if only_store_id is not None:
        _run(
            conn,
            """
            INSERT INTO _stage_problems (src_row, col, value, reason, severity)
            SELECT s.src_row, :col, s.phone, :reason, 'warning'
            FROM _stage_custs s JOIN customers c ON c.external_id = s.customer_ext
            WHERE s.phone IS NOT NULL AND (c.store_id IS NULL OR c.store_id <> :store)
              AND c.phone IS DISTINCT FROM s.phone""",
            col=((mapping or {}).get("phone") or "phone")[:100],
            reason=PHONE_NOT_SAVED,
            store=only_store_id,
        )
    # Known customers without a phone or store get the one their lines show (erased customers stay erased).
    _run(
        conn,
        f"""
        UPDATE customers SET phone = COALESCE(customers.phone, s.phone),
                             store_id = COALESCE(customers.store_id, s.store_id)
        FROM (SELECT customer_ext, MAX(phone) AS phone, MIN(store_id) AS store_id FROM _stage_custs
              GROUP BY customer_ext) AS s
        WHERE s.customer_ext = customers.external_id AND customers.erased_at IS NULL{_scoped(only_store_id)}
          AND ((customers.phone IS NULL AND s.phone IS NOT NULL) OR customers.store_id IS NULL)""",
    )
    with row_checks.line_checks(conn, import_id) as checks:
        new = _run(
            conn,
            """
            INSERT INTO purchase_lines (transaction_ref, product_id, line_no, customer_id, store_id, purchased_at,
                                        quantity, unit_price, amount, coupon_code, import_id)
            SELECT s.txn_ref, p.id, s.line_no, c.id, s.store_id, s.purchased_at, s.quantity, s.unit_price, s.amount,
                   s.coupon_code, :import_id
            FROM _stage_lines s JOIN products p ON p.external_id = s.product_ext
            LEFT JOIN customers c ON c.external_id = s.customer_ext
            WHERE 1 = 1
            ON CONFLICT (transaction_ref, product_id, line_no) DO NOTHING""",
            import_id=import_id,
        )
    return Merged(new=new, present=valid - new, customers_new=created, line_checks=checks)


def stock(conn: Connection, import_id: int, as_of: date, by_name: bool, valid: int) -> Merged:
    """Products, then one stock level per (product, store): new rows inserted, changed rows updated."""
    if by_name:  # a file naming products only: match the names of products we already know
        _run(
            conn,
            """
            UPDATE _stage_stock SET product_ext = (SELECT MIN(p.external_id) FROM products p
                                                   WHERE p.name = _stage_stock.product_name)
            WHERE EXISTS (SELECT 1 FROM products p WHERE p.name = _stage_stock.product_name)""",
        )
    _dedupe(conn, "_stage_stock", "product_ext, store_id")
    _products(conn, "_stage_stock", with_price=True)
    _run(
        conn,
        """
        UPDATE products SET price = s.price FROM _stage_stock s
        WHERE s.product_ext = products.external_id AND s.price IS NOT NULL
          AND (products.price IS NULL OR products.price <> s.price)""",
    )
    updated = _run(
        conn,
        """
        UPDATE stock_levels SET initial_stock = s.initial_stock, total_sold = s.total_sold, as_of = :as_of,
                                import_id = :import_id
        FROM _stage_stock s, products p
        WHERE p.external_id = s.product_ext AND stock_levels.product_id = p.id AND stock_levels.store_id = s.store_id
          AND (stock_levels.initial_stock IS NULL OR stock_levels.total_sold IS NULL
               OR stock_levels.initial_stock <> s.initial_stock OR stock_levels.total_sold <> s.total_sold)""",
        as_of=as_of,
        import_id=import_id,
    )
    new = _run(
        conn,
        """
        INSERT INTO stock_levels (product_id, store_id, initial_stock, total_sold, as_of, import_id)
        SELECT p.id, s.store_id, s.initial_stock, s.total_sold, :as_of, :import_id
        FROM _stage_stock s JOIN products p ON p.external_id = s.product_ext
        WHERE 1 = 1
        ON CONFLICT (product_id, store_id) DO NOTHING""",
        as_of=as_of,
        import_id=import_id,
    )
    return Merged(new=new, updated=updated, present=valid - new - updated)


def customers(
    conn: Connection,
    import_id: int,
    now: datetime,
    user_email: str | None,
    mapping: dict,
    valid: int,
    only_store_id: int | None = None,
) -> Merged:
    """New customers, enrichment of known ones, and consent: an opt-out always wins over an opt-in.

    For a store user (``only_store_id``) rows naming another store's customer were already refused
    (``refuse_other_stores_customers``); every write here also keeps to that store, as a second lock.
    """
    _dedupe(conn, "_stage_customers", "customer_ext")
    created = _run(
        conn,
        """
        INSERT INTO customers (external_id, name, phone, email, store_id, sms_consent, created_at, birthday)
        SELECT customer_ext, name, phone, email, store_id, 'unknown', :now, birthday FROM _stage_customers
        WHERE 1 = 1
        ON CONFLICT (external_id) DO NOTHING""",
        now=now,
    )
    updated = _run(
        conn,
        """
        UPDATE customers SET name = COALESCE(s.name, customers.name), phone = COALESCE(s.phone, customers.phone),
                             email = COALESCE(s.email, customers.email),
                             store_id = COALESCE(s.store_id, customers.store_id),
                             birthday = COALESCE(s.birthday, customers.birthday)
        FROM _stage_customers s
        WHERE s.customer_ext = customers.external_id AND customers.erased_at IS NULL"""
        + _scoped(only_store_id)
        + """
          AND ((s.name IS NOT NULL AND s.name IS DISTINCT FROM customers.name)
               OR (s.phone IS NOT NULL AND s.phone IS DISTINCT FROM customers.phone)
               OR (s.email IS NOT NULL AND s.email IS DISTINCT FROM customers.email)
               OR (s.store_id IS NOT NULL AND s.store_id IS DISTINCT FROM customers.store_id)
               OR (s.birthday IS NOT NULL AND s.birthday IS DISTINCT FROM customers.birthday))""",
    )
    # An earlier opt-out is never overridden by a file's "yes": say so in the report.
    consent_col = (mapping.get("sms_consent") or "sms_consent")[:100]
    _run(
        conn,
        """
        INSERT INTO _stage_problems (src_row, col, value, reason, severity)
        SELECT s.src_row, :col, 'yes', 'customer opted out earlier; the opt-in in this file is ignored (opt-out wins)',
               'warning'
        FROM _stage_customers s JOIN customers c ON c.external_id = s.customer_ext
        WHERE s.consent = 'yes' AND c.sms_consent = 'opted_out'""",
        col=consent_col,
    )
    changes = 0
    for answer, status, condition in (
        ("no", "opted_out", "{c}.sms_consent <> 'opted_out'"),
        ("yes", "opted_in", "{c}.sms_consent = 'unknown'"),
    ):
        where = f"s.consent = '{answer}' AND {condition} AND {{c}}.erased_at IS NULL" + _scoped(only_store_id, "{c}")
        changes += _run(
            conn,
            f"""
            INSERT INTO consent_events (customer_id, status, source, effective_at, recorded_at, user_email, detail)
            SELECT c.id, '{status}', 'import', COALESCE(s.consent_at, :now), :now, :user_email,
                   CASE WHEN s.consent_at IS NULL THEN :detail_nodate ELSE :detail END
            FROM _stage_customers s JOIN customers c ON c.external_id = s.customer_ext
            WHERE {where.format(c='c')}""",
            now=now,
            user_email=user_email,
            detail=f"import #{import_id}",
            detail_nodate=f"import #{import_id}; no date in the file, recorded at import time",
        )
        _run(
            conn,
            f"""
            UPDATE customers SET sms_consent = '{status}', sms_consent_at = COALESCE(s.consent_at, :now),
                                 sms_consent_source = 'import', sms_consent_by = :user_email
            FROM _stage_customers s
            WHERE s.customer_ext = customers.external_id AND {where.format(c='customers')}""",
            now=now,
            user_email=user_email,
        )
    return Merged(new=created, present=valid - created, updated=updated, customers_new=created, consent_changes=changes)


def _dedupe(conn: Connection, table: str, key: str) -> None:
    """Keep the last row of the file for each key (a later row corrects an earlier one)."""
    _run(conn, f"DELETE FROM {table} WHERE src_row NOT IN (SELECT MAX(src_row) FROM {table} GROUP BY {key})")


def problems(conn: Connection, import_id: int) -> int:
    """Copy the staged problems into import_problems; returns how many were listed."""
    return _run(
        conn,
        """
        INSERT INTO import_problems (import_id, "row", "column", value, reason, severity)
        SELECT :import_id, src_row, col, value, reason, severity FROM _stage_problems ORDER BY src_row""",
        import_id=import_id,
    )
