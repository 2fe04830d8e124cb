"""SQLite connection settings: WAL for concurrent readers, foreign keys on, a busy timeout; a private file."""

import os

from flask import Flask
from sqlalchemy import event

from portal.extensions import db


def register(app: Flask) -> None:
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "do_connect")
    def _private_file(_dialect, _record, _cargs, _cparams):
        create_private(engine.url.database)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


def create_private(path: str | None) -> None:
    """Create a missing SQLite file readable by its owner only (0600) before SQLite opens it.

    SQLite creates its -wal and -shm files with the database file's permissions, so they follow.
    """
    if not path or path == ":memory:" or path.startswith("file:") or os.path.exists(path):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except (FileExistsError, FileNotFoundError):
        pass  # another process won the race, or the folder is missing (SQLite then says so)
