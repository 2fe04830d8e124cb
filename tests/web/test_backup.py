"""Backups restore into a working portal: SQLite's online backup taken while a writer is busy, and a
PostgreSQL ``pg_dump -Fc`` / ``pg_restore`` round trip (docs/DEPLOYING.md describes both)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from portal.models import Customer, Store, User

REPO = Path(__file__).resolve().parents[2]
ADMIN = "backup-admin@example.com"


def _flask(args: list[str], url: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "FLASK_APP": "app.py",
        "DATABASE_URL": url,
        "SECRET_KEY": "x" * 32,
        "MODELS_DIR": str(tmp_path / "Models"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "ADMIN_EMAIL": ADMIN,
        "ADMIN_PASSWORD": "a-long-password",
    }
    env.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "flask", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def _sa_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1] if url.startswith(("postgresql://", "postgres://")) else url


def _seed(url: str, n: int = 300) -> None:
    """A store and ``n`` customers, written through the models (as the importer's rows would be)."""
    engine = create_engine(_sa_url(url))
    with Session(engine) as session:
        store = Store(name="Backup store", timezone="UTC")
        session.add(store)
        session.flush()
        session.add_all(Customer(external_id=f"B{i:05d}", name=f"Kept {i}", store_id=store.id) for i in range(n))
        session.commit()
    engine.dispose()


class Writer(threading.Thread):
    """Keeps inserting customers in small transactions until stopped; counts what it committed."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.engine = create_engine(_sa_url(url), connect_args={"timeout": 30} if url.startswith("sqlite") else {})
        self.stop = threading.Event()
        self.committed = 0
        self.started = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                with Session(self.engine) as session:
                    session.add_all(
                        Customer(external_id=f"W{uuid.uuid4().hex[:20]}", name="Written during backup")
                        for _ in range(20)
                    )
                    session.commit()
                self.committed += 20
                self.started.set()
        except BaseException as exc:  # surfaced by the test
            self.error = exc
            self.started.set()
        finally:
            self.engine.dispose()


def _counts(url: str) -> dict[str, int]:
    engine = create_engine(_sa_url(url))
    with engine.connect() as conn:
        counts = {
            "kept": conn.scalar(select(func.count()).select_from(Customer).where(Customer.external_id.like("B%"))),
            "written": conn.scalar(select(func.count()).select_from(Customer).where(Customer.external_id.like("W%"))),
            "pending": conn.scalar(select(func.count()).select_from(Customer).where(Customer.external_id.like("U%"))),
            "admins": conn.scalar(select(func.count()).select_from(User).where(User.email == ADMIN)),
            "version": conn.scalar(text("SELECT version_num FROM alembic_version")),
        }
    engine.dispose()
    return counts


def _assert_init_db_is_a_no_op(url: str, tmp_path: Path, before: dict) -> None:
    out = _flask(["init-db"], url, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout and "created admin" not in out.stdout
    assert _counts(url) == before


@pytest.mark.slow
def test_sqlite_online_backup_during_writes_restores_a_working_database(tmp_path):
    live = tmp_path / "live.db"
    url = f"sqlite:///{live}"
    created = _flask(["init-db"], url, tmp_path)
    assert created.returncode == 0, created.stderr
    _seed(url)
    with sqlite3.connect(live) as conn:  # the app's own setting (portal/db_events.py): readers and a writer at once
        conn.execute("PRAGMA journal_mode=WAL")

    writer = Writer(url)
    writer.start()
    assert writer.started.wait(60) and writer.error is None, writer.error
    committed_before = writer.committed
    # A second writer holds an open, uncommitted transaction across the whole backup.
    pending = sqlite3.connect(live, timeout=30, isolation_level=None)
    pending.execute("BEGIN IMMEDIATE")
    pending.execute(
        "INSERT INTO customers (external_id, name, sms_consent, created_at) "
        "VALUES ('U00001', 'Not committed yet', 'unknown', '2026-01-01 00:00:00')"
    )
    source = sqlite3.connect(live, timeout=30)
    backup = sqlite3.connect(tmp_path / "backup.db")
    source.backup(backup)  # one step (pages=-1): a consistent snapshot while the app keeps writing (WAL)
    backup.close()
    source.close()
    pending.execute("COMMIT")
    pending.close()
    writer.stop.set()
    writer.join(60)
    assert writer.error is None, writer.error
    assert writer.committed > committed_before, "the writer stopped before the backup"

    # Restore as an operator would, into a fresh file, through SQLite's backup API (sqlite3 ".restore").
    restored = tmp_path / "restored.db"
    with sqlite3.connect(tmp_path / "backup.db") as src, sqlite3.connect(restored) as dst:
        src.backup(dst)
    with sqlite3.connect(restored) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    counts = _counts(f"sqlite:///{restored}")
    assert counts["kept"] == 300 and counts["admins"] == 1
    assert counts["pending"] == 0 and _counts(url)["pending"] == 1  # uncommitted then: not in the backup
    assert committed_before <= counts["written"] <= writer.committed
    assert counts["written"] % 20 == 0, "a transaction was cut in half"
    assert counts["version"] == _counts(url)["version"]
    _assert_init_db_is_a_no_op(f"sqlite:///{restored}", tmp_path, counts)


def _pg_target() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgresql", "postgres://")):
        return None
    return "postgresql://" + url.split("://", 1)[1]


@pytest.mark.slow
def test_pg_dump_and_pg_restore_round_trip(tmp_path):
    url = _pg_target()
    if url is None:
        pytest.skip("DATABASE_URL is not PostgreSQL: the pg_dump round trip runs in CI's PostgreSQL pass")
    if not (shutil.which("pg_dump") and shutil.which("pg_restore")):
        pytest.skip("pg_dump / pg_restore are not on PATH (apt-get install postgresql-client)")
    parts = urlsplit(url)
    suffix = uuid.uuid4().hex[:8]
    source_db, restored_db = f"loyalist_backup_src_{suffix}", f"loyalist_backup_dst_{suffix}"
    admin = create_engine(_sa_url(urlunsplit(parts._replace(path="/postgres"))), isolation_level="AUTOCOMMIT")

    def db_url(name: str) -> str:
        return urlunsplit(parts._replace(path=f"/{name}"))

    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{source_db}"'))
        conn.execute(text(f'CREATE DATABASE "{restored_db}"'))
    try:
        created = _flask(["init-db"], db_url(source_db), tmp_path)
        assert created.returncode == 0, created.stderr
        _seed(db_url(source_db))
        writer = Writer(db_url(source_db))
        writer.start()
        assert writer.started.wait(60) and writer.error is None, writer.error
        committed_before = writer.committed
        dump = tmp_path / "loyalist.dump"
        out = subprocess.run(
            ["pg_dump", "-Fc", "-f", str(dump), "-d", db_url(source_db)], capture_output=True, text=True, timeout=300
        )
        writer.stop.set()
        writer.join(60)
        assert out.returncode == 0, out.stderr
        assert writer.error is None, writer.error

        out = subprocess.run(
            ["pg_restore", "--no-owner", "--exit-on-error", "-d", db_url(restored_db), str(dump)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        counts = _counts(db_url(restored_db))
        assert counts["kept"] == 300 and counts["admins"] == 1
        assert committed_before <= counts["written"] <= writer.committed and counts["written"] % 20 == 0
        assert counts["version"] == _counts(db_url(source_db))["version"]
        _assert_init_db_is_a_no_op(db_url(restored_db), tmp_path, counts)
    finally:
        with admin.connect() as conn:
            for name in (source_db, restored_db):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
