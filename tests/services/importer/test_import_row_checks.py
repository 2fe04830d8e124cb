"""PostgreSQL: the purchase lines' foreign keys checked set-based (row_checks) give the same result as
PostgreSQL's own per-row checks, hold the same locks, refuse the same bad rows, and fall back when the
database role may not skip the triggers. PostgreSQL only: CI's second pass runs these."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError

from portal.models import Customer, Product, PurchaseLine, Store
from portal.services.importer import history, merge, row_checks, runs, staging
from tests.services.importer.test_import_db_faults import _generated_csv, _import, _pg_url, _stores
from tests.web.test_imports import LOYALIST, write

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgresql"),
    reason="DATABASE_URL is not PostgreSQL: this runs in CI's PostgreSQL pass",
)

PLAIN_ROLE = "loyalist_plain_importer"
NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture()
def plain_role(db):
    """Every new pooled connection runs as a role that is not a superuser (and has no SET privilege on
    session_replication_role), the way many hosted databases run an application."""
    with db.engine.begin() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": PLAIN_ROLE}).scalar():
            conn.execute(text(f"CREATE ROLE {PLAIN_ROLE} NOSUPERUSER NOLOGIN"))
        conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {PLAIN_ROLE}"))
        conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {PLAIN_ROLE}"))

    def as_plain(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {PLAIN_ROLE}")
        dbapi_connection.commit()

    def leave():
        db.session.remove()
        if event.contains(db.engine, "connect", as_plain):
            event.remove(db.engine, "connect", as_plain)
        db.engine.dispose()

    db.session.remove()
    db.engine.dispose()
    event.listen(db.engine, "connect", as_plain)
    yield leave
    leave()


def _lines(db) -> list[tuple]:
    """Every line with its keys spelled out (external ids, not the surrogate ids of this database)."""
    db.session.expire_all()
    rows = db.session.execute(
        select(
            PurchaseLine.transaction_ref,
            Product.external_id,
            PurchaseLine.line_no,
            Customer.external_id,
            Store.name,
            PurchaseLine.purchased_at,
            PurchaseLine.quantity,
            PurchaseLine.amount,
        )
        .join(Product, Product.id == PurchaseLine.product_id)
        .join(Store, Store.id == PurchaseLine.store_id)
        .outerjoin(Customer, Customer.id == PurchaseLine.customer_id)
    ).all()
    return sorted(tuple(r) for r in rows)


def test_set_based_and_per_row_checks_import_the_same_lines(db, tmp_path, monkeypatch, plain_role):
    _stores(db)
    monkeypatch.setattr(runs, "_rescore", lambda import_id: None)
    path = _generated_csv(tmp_path, 800, seed=11)
    per_row = _import(path)  # the plain role: PostgreSQL's own triggers check every line
    assert per_row.status == "done" and per_row.new_rows == 800
    assert per_row.options["line_checks"] == row_checks.PER_ROW
    expected = _lines(db)
    assert len(expected) == 800 and any(r[3] is None for r in expected)  # anonymous lines included
    history.undo(db.session.get(type(per_row), per_row.id), "test")
    assert _lines(db) == []

    plain_role()  # back to the test database's superuser, who may skip the triggers
    set_based = _import(path)
    assert set_based.options["line_checks"] == row_checks.SET_BASED
    assert (set_based.new_rows, set_based.duplicate_rows) == (800, 0)
    assert _lines(db) == expected
    again = _import(path)
    assert (again.new_rows, again.duplicate_rows) == (0, 800)


def _parents(db, tmp_path) -> int:
    """A committed product P1, customer C1 and import run; returns the run's id."""
    db.session.add_all(
        [Product(external_id="P1", name="Mug"), Customer(external_id="C1", sms_consent="unknown", created_at=NOW)]
    )
    db.session.commit()
    run, _ = runs.create_run(
        "transactions", write(tmp_path, "x.csv", LOYALIST), "x.csv", store=None, user_email="test", source="cli"
    )
    run_id = run.id
    db.session.remove()
    return run_id


def _staged(conn, store_id: int) -> None:
    """One staged line of C1 buying P1 at ``store_id``."""
    staging.create_tables(conn, "transactions")
    conn.execute(text("INSERT INTO _stage_products VALUES ('P1', 'Mug')"))
    conn.execute(text("INSERT INTO _stage_custs VALUES ('C1', NULL, :s)"), {"s": store_id})
    conn.execute(
        text("INSERT INTO _stage_lines VALUES ('C1', 'T1', 'P1', 0, :s, '2026-01-02 10:00', 1, 2, 2, NULL)"),
        {"s": store_id},
    )
    staging.index_tables(conn, "transactions")


def test_a_staged_store_that_does_not_exist_is_refused_as_before(db, tmp_path):
    import_id = _parents(db, tmp_path)
    with db.engine.connect() as conn, conn.begin():
        _staged(conn, store_id=987654)
        with row_checks.line_checks(conn, import_id) as checks:
            assert checks == row_checks.PER_ROW  # not proven set-based: PostgreSQL's triggers decide
        with pytest.raises(IntegrityError, match="store"):
            merge.transactions(conn, import_id, now=NOW, valid=1)


def test_set_based_checks_lock_the_referenced_rows_and_restore_the_triggers(db, make_store, tmp_path):
    """The parents stay locked against deletion and key changes until the import commits (what the
    per-row triggers' FOR KEY SHARE does), and the triggers check the rest of the transaction again."""
    import psycopg

    store_id = make_store().id
    import_id = _parents(db, tmp_path)
    with db.engine.connect() as conn, conn.begin():
        _staged(conn, store_id=store_id)
        with row_checks.line_checks(conn, import_id) as checks:
            assert checks == row_checks.SET_BASED
            assert conn.exec_driver_sql("SHOW session_replication_role").scalar() == "replica"
        assert conn.exec_driver_sql("SHOW session_replication_role").scalar() == "origin"
        conn.exec_driver_sql("SAVEPOINT after")
        with pytest.raises(IntegrityError):  # a line naming a missing product is caught again
            conn.execute(
                text("""
                INSERT INTO purchase_lines (transaction_ref, product_id, line_no, store_id, purchased_at, quantity,
                                            unit_price, amount) VALUES ('T9', 99999, 0, :s, now(), 1, 1, 1)"""),
                {"s": store_id},
            )
        conn.exec_driver_sql("ROLLBACK TO SAVEPOINT after")
        with psycopg.connect(_pg_url(db), autocommit=True) as other:
            other.execute("SET lock_timeout = '300ms'")
            # Changing a column that is not a key is allowed, as with PostgreSQL's own checks.
            other.execute("UPDATE stores SET timezone = 'Europe/London' WHERE id = %s", (store_id,))
            for statement, value in (
                ("DELETE FROM stores WHERE id = %s", store_id),
                ("DELETE FROM imports WHERE id = %s", import_id),
                ("UPDATE products SET id = id + 1000 WHERE external_id = %s", "P1"),
                ("DELETE FROM customers WHERE external_id = %s", "C1"),
            ):
                with pytest.raises(psycopg.errors.LockNotAvailable):
                    other.execute(statement, (value,))
