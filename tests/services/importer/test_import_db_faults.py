"""Database faults during an import, and a property over the whole database importer.

A PostgreSQL connection killed half-way through a file and a SQLite database that runs out of space
must both end the run as failed with a message a store manager understands, leave the real tables
exactly as they were, and let the same file be imported again once the fault is gone. The property
imports small generated files (good, bad, duplicated and already-imported rows) with the real
importer and checks that the counts it reports add up and match what the database gained.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as tally
from hypothesis import strategies as st
from sqlalchemy import event, func, select

from portal.models import ImportProblem, ImportRun, Product, PurchaseLine, Store
from portal.services.importer import runs, staging
from preprocessing import synthetic
from tests.web.test_imports import LOYALIST, counts, write

PG_ONLY = "DATABASE_URL is not PostgreSQL: this runs in CI's PostgreSQL pass"


def _stores(db) -> None:
    """The three stores the generated files name (rows naming an unknown store would be rejected)."""
    for name in synthetic.STORES["store"]:
        db.session.add(Store(name=name, timezone="America/New_York", phone_region="US"))
    db.session.commit()


def _generated_csv(tmp_path, n: int, seed: int = 7) -> str:
    path = tmp_path / f"lines_{n}_{seed}.csv"
    synthetic.generate_lines(n, seed=seed).to_csv(path, index=False, date_format="%Y-%m-%d %H:%M:%S")
    return str(path)


def _import(path: str, all_or_nothing: bool = False) -> ImportRun:
    """Record a run for ``path`` and execute it the way the CLI does (no background job)."""
    run, _ = runs.create_run(
        "transactions",
        path,
        os.path.basename(path),
        store=None,
        user_email="test",
        source="cli",
        all_or_nothing=all_or_nothing,
    )
    return runs.execute(run.id)


def _reload(db, run_id: int) -> ImportRun:
    db.session.expire_all()
    return db.session.get(ImportRun, run_id)


def _problems(db, run_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(ImportProblem).where(ImportProblem.import_id == run_id))


# -- a PostgreSQL connection killed during the import ----------------------------------------------------------


def _pg_url(db) -> str:
    return db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _terminate(url: str, pid: int) -> None:
    """End one backend of this database (never another database's, never our own) and wait until it is gone."""
    import psycopg

    with psycopg.connect(url, autocommit=True, application_name="loyalist-test-killer") as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE pid = %s AND datname = current_database() AND pid <> pg_backend_pid()",
            (pid,),
        ).fetchall()
    assert ended == [(True,)], f"backend {pid} was not terminated: {ended}"


def test_postgresql_connection_killed_mid_import_fails_cleanly_and_the_retry_imports_everything(
    db, tmp_path, monkeypatch
):
    if not os.environ.get("DATABASE_URL", "").startswith("postgresql"):
        pytest.skip(PG_ONLY)
    _stores(db)
    first = _import(write(tmp_path, "first.csv", LOYALIST))
    assert first.status == "done" and first.new_rows == 4
    before = counts(db)
    n = 3000
    path = _generated_csv(tmp_path, n)
    monkeypatch.setattr(runs, "CHUNK_ROWS", 500)  # six chunks: the kill lands with two staged, four to go
    monkeypatch.setattr(runs, "_rescore", lambda import_id: None)  # scoring is not what is tested here
    real_load = staging.load
    seen = {"chunks": 0, "armed": True, "killed": None, "pids": set()}

    def load_then_kill(conn, table, frame):
        if table == "_stage_lines":
            seen["chunks"] += 1
            seen["pids"].add(conn.connection.driver_connection.info.backend_pid)
            if seen["armed"] and seen["chunks"] == 3:
                seen["armed"] = False
                seen["killed"] = conn.connection.driver_connection.info.backend_pid
                _terminate(_pg_url(db), seen["killed"])
        return real_load(conn, table, frame)

    monkeypatch.setattr(staging, "load", load_then_kill)
    run, _ = runs.create_run("transactions", path, "lines.csv", store=None, user_email="test", source="cli")
    with pytest.raises(runs.ImportFailed) as failed:
        runs.execute(run.id)
    assert seen["killed"] is not None and seen["chunks"] == 3  # it died half-way through the file
    run = _reload(db, run.id)
    assert run.status == "failed" and run.finished_at is not None
    assert run.message == str(failed.value)
    assert "connection to the database was lost" in run.message and "nothing was imported" in run.message
    assert "Traceback" not in run.message and "psycopg" not in run.message and "terminat" not in run.message
    assert counts(db) == before
    assert _problems(db, run.id) == 0

    seen["pids"].clear()
    retry = _import(path)  # the pool drops the dead connection (pre-ping); the same file goes in whole
    assert seen["killed"] not in seen["pids"]
    assert (retry.status, retry.total_rows, retry.valid_rows, retry.rejected_rows) == ("done", n, n, 0)
    assert (retry.new_rows, retry.duplicate_rows) == (n, 0)
    after = counts(db)
    assert after["lines"] == before["lines"] + n
    assert after["customers"] > before["customers"] and after["products"] > before["products"]
    assert (
        db.session.scalar(select(func.count()).select_from(PurchaseLine).where(PurchaseLine.import_id == retry.id)) == n
    )


# -- a full SQLite database ------------------------------------------------------------------------------------


class _PageLimit:
    """Caps every pooled SQLite connection at ``pages`` database pages (``PRAGMA max_page_count``).

    A checkout listener reaches the very connection the import writes with, and also the one that
    records the failure, as a full disk would. ``lift()`` restores SQLite's own maximum.
    """

    UNLIMITED = 4_294_967_294

    def __init__(self, engine, pages: int):
        self.engine, self.pages = engine, pages

    def _apply(self, dbapi_conn, _record, _proxy):
        dbapi_conn.execute(f"PRAGMA max_page_count = {self.pages}")

    def __enter__(self):
        event.listen(self.engine, "checkout", self._apply)
        return self

    def lift(self):
        self.pages = self.UNLIMITED

    def __exit__(self, *exc):
        self.lift()
        event.remove(self.engine, "checkout", self._apply)
        self.engine.dispose()  # no pooled connection keeps a cap


def test_full_sqlite_database_fails_with_a_plain_message_and_writes_nothing(db, tmp_path, monkeypatch):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("the page cap is SQLite's; PostgreSQL's disk-full code (53100) maps to the same message")
    _stores(db)
    assert _import(write(tmp_path, "first.csv", LOYALIST)).status == "done"
    before = counts(db)
    n = 3000
    path = _generated_csv(tmp_path, n, seed=11)
    monkeypatch.setattr(runs, "CHUNK_ROWS", 1000)
    monkeypatch.setattr(runs, "_rescore", lambda import_id: None)
    run_id = runs.create_run("transactions", path, "lines.csv", store=None, user_email="test", source="cli")[0].id
    db.session.remove()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM")  # no free pages left to reuse: new rows must grow the file
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    db.engine.dispose()
    with _PageLimit(db.engine, pages + 1) as limit:
        with pytest.raises(runs.ImportFailed) as failed:
            runs.execute(run_id)
        run = _reload(db, run_id)
        assert run.status == "failed" and run.message == str(failed.value)
        assert "ran out of space" in run.message and "nothing was imported" in run.message
        assert "disk is full" not in run.message and "sqlite" not in run.message.lower()
        assert counts(db) == before
        assert _problems(db, run_id) == 0
        limit.lift()
        db.session.remove()
        db.engine.dispose()
        retry = _import(path)
    assert (retry.status, retry.total_rows, retry.rejected_rows, retry.new_rows) == ("done", n, 0, n)
    assert counts(db)["lines"] == before["lines"] + n


def test_database_faults_are_told_apart_from_bugs():
    """The mapping itself, for the faults a test cannot easily cause (PostgreSQL's disk-full SQLSTATE)."""
    import sqlite3

    import psycopg
    from sqlalchemy.exc import OperationalError

    full = OperationalError("INSERT …", {}, sqlite3.OperationalError("database or disk is full"))
    assert "ran out of space" in runs._database_fault(full)
    pg_full = psycopg.errors.DiskFull("could not extend file: No space left on device")
    assert pg_full.sqlstate == "53100" and "ran out of space" in runs._database_fault(pg_full)
    assert "ran out of space" in runs._database_fault(OperationalError("COPY …", {}, pg_full))
    gone = psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    assert "connection to the database was lost" in runs._database_fault(gone)
    assert runs._database_fault(RuntimeError("a bug")) is None
    assert runs._database_fault(OperationalError("x", {}, sqlite3.OperationalError("no such table: t"))) is None


# -- property: the counts an import reports add up, and match what the database gained ------------------------

HEADER = [
    "customer_id",
    "transaction_id",
    "purchase_date",
    "product_id",
    "product_name",
    "quantity",
    "price_per_unit",
    "total_amount",
    "Mobile",
]
PRODUCTS = {"P1": "Blue Mug", "P2": "Teapot", "P3": "Apron"}
BAD = {
    "bad_date": ("purchase_date", ["yesterday", "2025-02-30", "2025-13-01 10:00:00"]),
    "bad_amount": ("price_per_unit", ["twelve", "1.2.3"]),
    "missing_value": ("quantity", [""]),
}
_examples = itertools.count()


@st.composite
def _good_row(draw) -> dict:
    pid = draw(st.sampled_from(sorted(PRODUCTS)))
    qty = draw(st.sampled_from([1, 2, 3, -1]))
    price = draw(st.sampled_from([2.5, 12.0, 34.0]))
    customer = draw(st.sampled_from(["C1", "C2", "C3", ""]))
    return {
        "customer_id": customer,
        "transaction_id": draw(st.sampled_from(["T1", "T2", "T3", "T4"])),
        "purchase_date": f"2025-03-{draw(st.integers(1, 28)):02d} {draw(st.integers(0, 23)):02d}:00:00",
        "product_id": pid,
        "product_name": PRODUCTS[pid],
        "quantity": str(qty),
        "price_per_unit": f"{price:.2f}",
        "total_amount": f"{qty * price:.2f}",
        "Mobile": "+1 202 555 01" + customer[-1:].rjust(2, "0"),
        "bad": False,
    }


@st.composite
def _row(draw, earlier: list[dict], so_far: list[dict]) -> dict:
    kind = draw(
        st.sampled_from(
            ["good", "good", "bad_date", "bad_amount", "missing_value", "bad_phone", "duplicate", "earlier"]
        )
    )
    if kind == "duplicate" and so_far:
        return dict(draw(st.sampled_from(so_far)))
    if kind == "earlier":
        return dict(draw(st.sampled_from(earlier)))
    row = draw(_good_row())
    if kind in BAD:
        column, values = BAD[kind]
        row[column], row["bad"] = draw(st.sampled_from(values)), True
    elif kind == "bad_phone":
        row["Mobile"] = draw(st.sampled_from(["12345", "call me", "+1 000 000 0000"]))  # a warning: row kept
    return row


@st.composite
def _case(draw) -> tuple[list[dict], list[dict], bool]:
    earlier = draw(st.lists(_good_row(), min_size=1, max_size=5))
    rows: list[dict] = []
    for _ in range(draw(st.integers(5, 40))):
        rows.append(draw(_row(earlier, rows)))
    return earlier, rows, draw(st.booleans())


def _write_rows(folder, name: str, rows: list[dict], prefix: str) -> str:
    """The rows as a CSV; transaction ids get the example's prefix so examples never share a line key."""
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for row in rows:
            writer.writerow([prefix + row[h] if h == "transaction_id" else row[h] for h in HEADER])
    return str(path)


def _line_keys(rows: list[dict], prefix: str) -> list[tuple[str, str, int]]:
    """The natural key of each row: (transaction, product, n-th such line in the file, bad rows included)."""
    seen: Counter = Counter()
    keys = []
    for row in rows:
        pair = (prefix + row["transaction_id"], row["product_id"])
        seen[pair] += 1
        keys.append((*pair, seen[pair]))
    return keys


def _keys_in_db(db, prefix: str) -> set[tuple[str, str, int]]:
    query = (
        select(PurchaseLine.transaction_ref, Product.external_id, PurchaseLine.line_no)
        .join(Product, Product.id == PurchaseLine.product_id)
        .where(PurchaseLine.transaction_ref.startswith(prefix))
    )
    return {tuple(r) for r in db.session.execute(query)}


def _line_count(db) -> int:
    return db.session.scalar(select(func.count()).select_from(PurchaseLine))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(case=_case())
def test_import_counts_add_up_and_match_the_database(db, tmp_path, monkeypatch, case):
    earlier, rows, all_or_nothing = case
    monkeypatch.setattr(runs, "_rescore", lambda import_id: None)  # scoring is not part of the property
    if db.session.scalar(select(func.count()).select_from(Store)) == 0:
        db.session.add(Store(name="Downtown", timezone="America/New_York", phone_region="US"))
        db.session.commit()
    example = next(_examples)
    prefix = f"X{example}-"
    first = _import(_write_rows(tmp_path, f"earlier_{example}.csv", earlier, prefix))
    assert (first.status, first.rejected_rows) == ("done", 0)
    earlier_keys = set(_line_keys(earlier, prefix))
    assert _keys_in_db(db, prefix) == earlier_keys and first.new_rows == len(earlier_keys)

    lines_before = _line_count(db)
    run = _import(_write_rows(tmp_path, f"rows_{example}.csv", rows, prefix), all_or_nothing=all_or_nothing)
    keys = _line_keys(rows, prefix)
    valid = [k for k, row in zip(keys, rows) if not row["bad"]]
    bad = len(rows) - len(valid)
    expected_new = set(valid) - earlier_keys
    assert (run.total_rows, run.valid_rows, run.rejected_rows) == (len(rows), len(valid), bad)
    gained = _line_count(db) - lines_before
    tally(f"run {run.status}" + (", all or nothing" if all_or_nothing else ""))
    tally("rows already present" if set(valid) & earlier_keys else "no row already present")
    if (all_or_nothing and bad) or not valid:
        assert run.status == "refused" and (run.new_rows, run.duplicate_rows, gained) == (0, 0, 0)
        assert _keys_in_db(db, prefix) == earlier_keys
        return
    assert run.status == "done"
    assert run.new_rows + run.rejected_rows + run.duplicate_rows == run.total_rows
    assert gained == run.new_rows == len(expected_new)
    assert run.duplicate_rows == len(valid) - len(expected_new)
    assert _keys_in_db(db, prefix) == earlier_keys | expected_new
    assert (
        db.session.scalar(select(func.count()).select_from(PurchaseLine).where(PurchaseLine.import_id == run.id))
        == run.new_rows
    )
