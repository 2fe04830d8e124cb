"""How job processes share one machine: a lock per database so one job runs at a time across
web processes (embedded runner), and a lower CPU priority for the processes that run jobs."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask
from sqlalchemy import event, make_url

from portal.extensions import db

log = logging.getLogger(__name__)


@contextmanager
def database_lock(app: Flask, purpose: str) -> Iterator:
    """Hold an exclusive lock shared by every process of this machine on this app's database.

    ``fcntl.flock`` on a file next to the SQLite file (another database: in the instance folder,
    named after its URL). The kernel drops the lock when its process dies, so a killed web
    worker never leaves it held. Yields the open lock file.
    """
    path = _lock_path(app, purpose)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield handle


def _lock_path(app: Flask, purpose: str) -> Path:
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    name = url.database or ""
    if url.get_backend_name() == "sqlite" and name and name != ":memory:" and not name.startswith("file:"):
        return Path(os.path.abspath(name + f".{purpose}.lock"))
    digest = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    folder = Path(app.instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{purpose}-{digest}.lock"


def lower_priority(app: Flask) -> None:
    """Lower this process's CPU priority by JOBS_NICE (0: leave it): call at the start of a job process,
    never in the web process. A refusal (a sandbox that forbids it) is logged, not fatal.

    On PostgreSQL a job's heavy work runs in the database's own processes, which no niceness
    reaches; there its sessions also give up parallel query (``max_parallel_workers_per_gather
    = 0``), so one scoring GROUP BY takes one core, not every core the pages need.
    """
    step = int(app.config.get("JOBS_NICE") or 0)
    if step == 0:
        return
    try:
        os.nice(step)
    except OSError as exc:
        log.warning("could not change this job process's priority by %s: %s", step, exc)
    engine = db.engine  # called inside the process's app context (a CLI command)
    if engine.dialect.name == "postgresql" and not event.contains(engine, "connect", _serial_queries):
        event.listen(engine, "connect", _serial_queries)
        engine.dispose()  # connections opened before this point are replaced as they come back


def _serial_queries(dbapi_connection, _record) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET max_parallel_workers_per_gather = 0")
    dbapi_connection.commit()
