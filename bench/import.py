"""Import benchmark: time and peak memory to import N generated purchase lines on SQLite and PostgreSQL.

    python -m bench.import [--quick] [--n 1000000] [--backends sqlite,postgresql,postgresql-per-row] [--pg-url URL]

Each case runs in its own subprocess (so peak RSS is the whole import process) against a fresh
database: a SQLite file in a temporary folder, and a throwaway PostgreSQL database (default
``postgresql://postgres@127.0.0.1:5432/bench_import``, created with ``createdb`` if missing; never
the shared test database). One JSON line per measurement: name, n, seconds, peak_rss_mb, and
``ratio`` = import seconds / the reference (reading and validating the same file with
``preprocessing.columns``, no database) measured in the same run. ``cpu_ref_s`` times a fixed
pure-Python loop, to show how loaded the machine was. Re-scoring after the import is not timed.
``postgresql-per-row`` is the same PostgreSQL import with the purchase lines' foreign keys checked
by PostgreSQL's per-row triggers (what a role that may not set ``session_replication_role`` gets;
see portal/services/importer/row_checks.py); ``line_checks`` says which way each case ran.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/bench_import"


def _cpu_ref() -> float:
    start = time.perf_counter()
    sum(i * i for i in range(3_000_000))
    return round(time.perf_counter() - start, 3)


def _write_file(n: int, folder: Path) -> Path:
    from preprocessing import synthetic

    path = folder / f"lines_{n}.csv"
    frame = synthetic.generate_lines(n, seed=7)
    frame.to_csv(path, index=False, date_format="%Y-%m-%d %H:%M:%S")
    return path


def _child_validate(path: str) -> dict:
    from preprocessing.columns import ValidationState, detect_mapping, read_table, validate_chunk

    start = time.perf_counter()
    rows = 0
    with read_table(path, "bench.csv") as reader:
        mapping = detect_mapping(reader.headers, "transactions")
        state = ValidationState()
        for chunk in reader:
            clean, _ = validate_chunk(chunk, mapping, "transactions", state=state)
            rows += len(clean)
    return {"seconds": round(time.perf_counter() - start, 2), "rows": rows}


def _child_import(backend: str, path: str, url: str) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from app import create_app
    from portal.config import TestConfig
    from portal.extensions import db
    from portal.models import Store
    from portal.services import importer
    from portal.services.importer import runs

    runs._rescore = lambda import_id: None  # measure the import, not the scoring it triggers
    if backend == "postgresql-per-row":  # the fallback for a role that may not skip foreign-key triggers
        from portal.services.importer import row_checks

        row_checks._skip_triggers = lambda conn: False
    config = TestConfig(database_url=url)
    config.UPLOAD_DIR = tempfile.mkdtemp(prefix="bench-uploads-")
    app = create_app(config)
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.create_all()
        for name in ("Downtown", "Harbor", "Uptown"):
            db.session.add(Store(name=name, timezone="America/New_York"))
        db.session.commit()
        results = {}
        for label in ("first", "again"):
            start = time.perf_counter()
            run, _ = importer.create_run(
                "transactions", path, "bench.csv", store=None, user_email="bench", source="cli"
            )
            run = importer.execute(run.id)
            results[label] = {
                "seconds": round(time.perf_counter() - start, 2),
                "status": run.status,
                "new": run.new_rows,
                "present": run.duplicate_rows,
                "total": run.total_rows,
                "line_checks": (run.options or {}).get("line_checks"),
            }
        db.session.remove()  # an open read transaction would make PostgreSQL's DROP wait forever
        db.drop_all()
    return results


def _run_child(args: list[str]) -> tuple[dict, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.import", "--child", *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=1800,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data, data.pop("peak_rss_mb")


def _ensure_pg(url: str) -> bool:
    name = url.rsplit("/", 1)[1]
    try:
        import psycopg

        admin = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
        return True
    except Exception as exc:  # no server: skip that backend, say so
        print(json.dumps({"name": "import_postgresql", "skipped": f"{exc.__class__.__name__}: {exc}"}))
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 lines instead of 1,000,000")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--backends", default="sqlite,postgresql,postgresql-per-row")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        result = _child_validate(rest[0]) if kind == "validate" else _child_import(kind, rest[0], rest[1])
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(json.dumps(result))
        return 0
    n = args.n or (50_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        folder = Path(tmp)
        path = _write_file(n, folder)
        size_mb = round(path.stat().st_size / 1048576, 1)
        ref, ref_rss = _run_child(["validate", str(path)])
        print(
            json.dumps(
                {
                    "name": "reference_read_validate",
                    "n": n,
                    "seconds": ref["seconds"],
                    "peak_rss_mb": ref_rss,
                    "ratio": 1.0,
                    "file_mb": size_mb,
                    "cpu_ref_s": _cpu_ref(),
                }
            )
        )
        for backend in args.backends.split(","):
            if backend == "sqlite":
                url = f"sqlite:///{folder / 'bench.db'}"
            elif backend in ("postgresql", "postgresql-per-row"):
                if not _ensure_pg(args.pg_url):
                    continue
                url = args.pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
            else:
                parser.error(f"unknown backend {backend}")
            data, rss = _run_child([backend, str(path), url])
            for label, case in data.items():
                print(
                    json.dumps(
                        {
                            "name": f"import_{backend}_{label}",
                            "n": n,
                            "seconds": case["seconds"],
                            "peak_rss_mb": rss,
                            "ratio": round(case["seconds"] / max(ref["seconds"], 1e-9), 2),
                            "status": case["status"],
                            "new": case["new"],
                            "already_present": case["present"],
                            "total": case["total"],
                            "line_checks": case["line_checks"],
                            "cpu_ref_s": _cpu_ref(),
                        }
                    )
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
