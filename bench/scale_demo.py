"""A throwaway Loyalist database holding the demo store scaled up (100k customers by default).

    python -m bench.scale_demo [--customers 100000] [--days 730] [--seed 42] [--postgres] [--rebuild]

Built the way an operator would: ``preprocessing.synthetic.generate_store`` writes the stock,
customers and transactions CSVs, then ``flask init-db``, ``flask import`` (the real importer) and
``flask train all`` run as subprocesses with DATABASE_URL / MODELS_DIR / SECRET_KEY set. The only
step that is not a CLI command is creating the three demo stores (``flask demo`` does it, but also
loads the 5,000-customer demo; an admin would use Admin -> Stores).

The result is cached under ``$LOYALIST_BENCH_CACHE`` (default ``<tmp>/loyalist-bench``), keyed by the
parameters, so a rerun with the same parameters takes seconds (the copy is migrated with ``flask init-db``).
SQLite: a file in the cache folder. PostgreSQL (``--postgres``): the database ``loyalist_load`` on
``$LOAD_PG`` (default ``postgresql://postgres@127.0.0.1:5432``), created with ``createdb`` and kept as
the pristine copy; ``working_copy()`` clones either backend for a run that writes (a load test imports
and sends), so the cached build never drifts. The shared ``test`` database is never touched.

The demo generator draws phone numbers from the 8,000 fictional North-American 555-01XX numbers; past
8,000 customers numbers repeat (still fictional; a campaign then texts some numbers for two customers).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PG_SERVER = os.environ.get("LOAD_PG", "postgresql://postgres@127.0.0.1:5432")
PG_DB = "loyalist_load"
PG_RUN_DB = "loyalist_load_run"
FORBIDDEN_DBS = {"test", "postgres", "template0", "template1"}
ADMIN_EMAIL = "load-admin@example.com"
ADMIN_PASSWORD = "load-test-admin-password"
BUILD_VERSION = 1  # bump when the build recipe changes


@dataclass
class Built:
    """A built database: what a process needs in its environment to use it."""

    backend: str  # "sqlite" | "postgresql"
    database_url: str
    models_dir: str
    folder: str  # cache folder: CSVs, uploads, marker, secret
    secret_key: str
    key: str
    n_customers: int
    n_lines: int
    build_seconds: float

    def env(self, **extra: str) -> dict[str, str]:
        """The environment a ``flask`` command or gunicorn needs to run against this database."""
        env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL", "WEB_CONCURRENCY"}}
        env.update(
            FLASK_APP="app.py",
            DATABASE_URL=self.database_url,
            MODELS_DIR=self.models_dir,
            SECRET_KEY=self.secret_key,
            UPLOAD_DIR=str(Path(self.folder) / "uploads"),
            ADMIN_EMAIL=ADMIN_EMAIL,
            ADMIN_PASSWORD=ADMIN_PASSWORD,
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env


def cache_root() -> Path:
    return Path(os.environ.get("LOYALIST_BENCH_CACHE") or Path(tempfile.gettempdir()) / "loyalist-bench")


def build_key(n_customers: int, days: int, seed: int) -> str:
    """Cache key: the parameters and the recipe version. The schema is not part of it: a reused build
    is brought up to date by ``flask init-db`` (the migrations) in ``working_copy``, as a real upgrade would."""
    raw = f"v{BUILD_VERSION}-{n_customers}-{days}-{seed}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _generate_csvs(folder: Path, n_customers: int, days: int, seed: int) -> int:
    """Write stock, customers and transactions CSVs of the scaled demo store; returns the line count."""
    import numpy as np

    from preprocessing import synthetic

    capacity = len(synthetic.AREA_CODES) * 100
    original = synthetic._phones

    def phones(rng, n):  # more customers than fictional numbers: draw with repetition
        if n <= capacity:
            return original(rng, n)
        slots = rng.integers(0, capacity, n)
        npa = np.asarray(synthetic.AREA_CODES)[slots // 100]
        return np.array([f"+1{a}555{100 + s % 100:04d}" for a, s in zip(npa, slots)], dtype=object)

    synthetic._phones = phones
    try:
        store = synthetic.generate_store(n_customers=n_customers, days=days, seed=seed)
    finally:
        synthetic._phones = original
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("stock", "customers", "transactions"):
        tmp = folder / f"{name}.csv.part"
        tmp.write_bytes(synthetic.to_csv_bytes(store[name]))
        tmp.rename(folder / f"{name}.csv")
    return len(store["transactions"])


def flask(
    args: list[str], env: dict[str, str], stdin: str | None = None, timeout: float = 3600, check: bool = True
) -> subprocess.CompletedProcess:
    """Run ``python -m flask ARGS`` in the repository with ``env``; raise with its stderr on failure."""
    out = subprocess.run(
        [sys.executable, "-m", "flask", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        text=True,
        capture_output=True,
        timeout=timeout,
    )
    if check and out.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} exited {out.returncode}: {out.stderr.strip()[-2000:]}")
    return out


def _create_stores(env: dict[str, str]) -> None:
    code = (
        "from app import create_app\n"
        "from portal.extensions import db\n"
        "from portal.imports.commands import DEMO_STORES\n"
        "from portal.services import accounts\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    for name, tz, sender, contact in DEMO_STORES:\n"
        "        accounts.ensure_store(name, timezone=tz, currency='USD', phone_region='US',\n"
        "                              sender_name=sender, contact_line=contact)\n"
        "    db.session.commit()\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=120, capture_output=True)


def _sa_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1] if url.startswith("postgresql://") else url


def _reconcile(built: Built, log) -> bool:
    """Make a cached build usable with today's migrations; False when it must be rebuilt.

    A known revision is simply upgraded later by ``flask init-db``. A revision the migrations no longer
    contain (the history was squashed while the code moved on) is accepted only when the database
    already has every table and column the models describe: indexes it lacks are created, and the
    database is stamped with the current head (``flask db stamp --purge head``).
    """
    import re

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    known = set()
    for path in (REPO / "migrations" / "versions").glob("*.py"):
        found = re.search(r"^revision\s*=\s*['\"]([0-9a-zA-Z_]+)['\"]", path.read_text(), re.M)
        if found:
            known.add(found.group(1))
    engine = create_engine(_sa_url(built.database_url))
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        if current in known:
            return True
        import portal.models  # noqa: F401  (registers the tables)
        from portal.extensions import db

        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        if any(not (isinstance(d, tuple) and d[0] == "add_index") for d in diff):
            return False
        for _, index in diff:
            log(f"scale_demo: creating index {index.name} (schema moved on since the build)")
            index.create(engine)
    finally:
        engine.dispose()
    flask(["db", "stamp", "--purge", "head"], built.env())
    return True


def _pg(cmd: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a PostgreSQL client tool (createdb, dropdb, psql) against PG_SERVER."""
    from urllib.parse import urlsplit

    parts = urlsplit(PG_SERVER)
    conn = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432), "-U", parts.username or "postgres"]
    return subprocess.run([cmd, *conn, *args], capture_output=True, text=True, timeout=600, check=check)


def _pg_exists(name: str) -> bool:
    out = _pg("psql", "-d", "postgres", "-Atc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'", check=False)
    return out.stdout.strip() == "1"


def _pg_recreate(name: str, template: str | None = None) -> None:
    if name in FORBIDDEN_DBS:
        raise ValueError(f"refusing to recreate database {name!r}")
    _pg("dropdb", "--if-exists", "--force", name)
    _pg("createdb", *(["-T", template] if template else []), name)


def build(
    n_customers: int = 100_000,
    days: int = 730,
    seed: int = 42,
    postgres: bool = False,
    rebuild: bool = False,
    log=print,
) -> Built:
    """Build (or reuse from the cache) the scaled demo database; returns how to reach it."""
    backend = "postgresql" if postgres else "sqlite"
    key = build_key(n_customers, days, seed)
    root = cache_root()
    folder = root / f"{backend}-{key}"
    marker = folder / "built.json"
    if marker.exists() and not rebuild:
        built = Built(**json.loads(marker.read_text()))
        if (backend == "sqlite" or _pg_exists(PG_DB)) and _reconcile(built, log):
            log(f"scale_demo: reusing {backend} build {key} ({built.n_customers} customers, {built.n_lines} lines)")
            return built
        log(f"scale_demo: the cached {backend} build no longer fits the migrations: rebuilding")
    started = time.perf_counter()
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "Models").mkdir(parents=True)
    (folder / "uploads").mkdir()
    csv_dir = root / f"csv-{key}"
    if not (csv_dir / "transactions.csv").exists():
        log(f"scale_demo: generating {n_customers} customers x {days} days (seed {seed})")
        _generate_csvs(csv_dir, n_customers, days, seed)
    with open(csv_dir / "transactions.csv", "rb") as fh:
        n_lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b"")) - 1
    if postgres:
        _pg_recreate(PG_DB)
        url = f"{PG_SERVER}/{PG_DB}"
    else:
        url = f"sqlite:///{folder / 'loyalist.db'}"
    built = Built(
        backend=backend,
        database_url=url,
        models_dir=str(folder / "Models"),
        folder=str(folder),
        secret_key=hashlib.sha256(f"load-{key}".encode()).hexdigest(),
        key=key,
        n_customers=n_customers,
        n_lines=n_lines,
        build_seconds=0.0,
    )
    env = built.env()
    log("scale_demo: flask init-db")
    flask(["init-db"], env)
    _create_stores(env)
    for kind in ("stock", "customers", "transactions"):
        t = time.perf_counter()
        log(f"scale_demo: flask import {kind}")
        out = flask(["import", kind, str(csv_dir / f"{kind}.csv"), "--store", "Downtown"], env)
        log(
            f"scale_demo:   {out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ''} "
            f"({time.perf_counter() - t:.0f} s)"
        )
    t = time.perf_counter()
    log("scale_demo: flask train all")
    out = flask(["train", "all"], env)
    log(f"scale_demo:   {out.stdout.strip()[-300:]} ({time.perf_counter() - t:.0f} s)")
    built.build_seconds = round(time.perf_counter() - started, 1)
    marker.write_text(json.dumps(asdict(built)))
    return built


def working_copy(built: Built, folder: Path) -> Built:
    """A disposable copy of a build for a run that writes (SQLite: file copy; PostgreSQL: createdb -T)."""
    folder.mkdir(parents=True, exist_ok=True)
    models = folder / "Models"
    if models.exists():
        shutil.rmtree(models)
    shutil.copytree(built.models_dir, models)
    (folder / "uploads").mkdir(exist_ok=True)
    if built.backend == "sqlite":
        import sqlite3

        target = folder / "loyalist.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        source = sqlite3.connect(built.database_url[len("sqlite:///") :])
        dest = sqlite3.connect(target)
        with dest:
            source.backup(dest)  # the online backup API: consistent even if the source were in use
        source.close()
        dest.close()
        url = f"sqlite:///{target}"
    else:
        _pg_recreate(PG_RUN_DB, template=PG_DB)
        url = f"{PG_SERVER}/{PG_RUN_DB}"
    copy = Built(**{**asdict(built), "database_url": url, "models_dir": str(models), "folder": str(folder)})
    flask(["init-db"], copy.env())  # schema changes since the build: the migrations upgrade the copy
    return copy


def drop_working_copy(built: Built) -> None:
    """Remove a working copy made by ``working_copy`` (the cached build stays)."""
    if built.backend == "postgresql" and built.database_url.endswith("/" + PG_RUN_DB):
        _pg("dropdb", "--if-exists", "--force", PG_RUN_DB, check=False)
    shutil.rmtree(built.folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--postgres", action="store_true", help="build in PostgreSQL (database loyalist_load)")
    parser.add_argument("--rebuild", action="store_true", help="ignore the cache")
    args = parser.parse_args(argv)
    built = build(
        args.customers,
        args.days,
        args.seed,
        args.postgres,
        args.rebuild,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(
        json.dumps(
            {
                "name": f"scale_demo.{built.backend}",
                "n": built.n_customers,
                "lines": built.n_lines,
                "seconds": built.build_seconds,
                "database_url": built.database_url,
            }
        )
    )


if __name__ == "__main__":
    main()
