"""Heavy data on PostgreSQL: per-customer features in pandas (every line pulled) vs GROUP BY in the database.

    python -m bench.heavy            # 10M lines, ~1M customers: load + the two feature paths
    python -m bench.heavy --quick    # 1M lines, ~100k customers: also scoring, its inputs, equality checks
    python -m bench.heavy --keep ... # keep the loaded database; later runs add --reuse to skip loading
    BENCH_PG=postgresql://postgres@127.0.0.1:5432 python -m bench.heavy --db loyalist_bench

Creates its own database (``--db``, default ``loyalist_bench``; dropped again at the end unless
``--keep``), creates the schema with the app's models and loads the same synthetic lines as
``bench.features`` (10 lines per customer, ~2.5 lines per transaction, ~5 % anonymous sales, ~3 %
returns, ~1 % zero-price lines, 5,000 products over two years, in date order as imports arrive):
binary ``COPY`` (psycopg ``cursor.copy``) into an unlogged staging table, one ``INSERT .. SELECT``
into ``purchase_lines`` (the importer's stage-then-merge shape), then the indexes and the natural-key
constraint, and ``VACUUM ANALYZE`` as autovacuum would.

Measured cases, each in its own subprocess (``peak_rss_mb`` is that whole Python process: interpreter,
app, data; the database server is not in it — its sorts stay within ``work_mem`` and spill to
temporary files, reported as ``pg_temp_mb``):

- ``features/pandas``: ``load_lines()`` + ``compute_features`` (the SQLite scoring path; the reference).
  Stopped after ``--pandas-timeout`` seconds and reported ``timed_out`` (the SQL case then gets
  ``ratio_at_most``);
- ``features/sql``: ``customer_features_sql()``;
- ``scoring/pandas`` and ``scoring/sql`` (``--quick``, or ``--scoring`` at full size): a re-score with
  a trained tier model and no churn/CLV model — features, ``spend_12m``, ``tiers_for`` and
  ``_store`` (one UPDATE per customer plus one TierChange each; tiers are reset before each case so
  both write the same rows). ``_store`` costs the same on both paths;
- ``inputs/pandas`` and ``inputs/sql`` (``--quick``, or ``--inputs`` at full size): everything
  ``scoring.rescore_all`` reads from the lines when tier, churn and CLV models are all trained —
  features, ``spend_12m``, the churn feature frame and the CLV summary. ``pandas`` is
  ``scoring.inputs_from_lines(load_lines())`` (the SQLite path), ``sql`` is
  ``scoring.inputs_from_database()`` (the PostgreSQL path: no line reaches Python). No model is
  fitted or applied: that costs the same on both paths;
- ``check``: the two feature tables are equal, and so are both paths' scoring inputs (``--quick``,
  or ``--check`` at full size).

Each JSON line: name, n (lines), customers, seconds (the measured work), process_seconds (the whole
subprocess, imports and app start included), peak_rss_mb, ratio (seconds / the pandas case's
seconds in the same run), rss_ratio (peak_rss_mb / the pandas case's), phase timings;
``load_avg_1m`` says how busy the 2-core machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np


def _base() -> str:
    return os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")


def _url(db_name: str, driver: bool = True) -> str:
    raw = f"{_base()}/{db_name}"
    return "postgresql+psycopg://" + raw[len("postgresql://") :] if driver else raw


def _app(db_name: str, models_dir: str):
    from app import create_app
    from portal.config import TestConfig

    return create_app(TestConfig(database_url=_url(db_name), models_dir=models_dir))


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _pg(db_name: str):
    import psycopg

    return psycopg.connect(_url(db_name, driver=False), autocommit=True)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
# Staging row in PostgreSQL's binary COPY layout: field count, then (length, big-endian value) per field.
_STAGE_FIELDS = (
    ("id", ">i8"),
    ("tx", ">i4"),
    ("product", ">i4"),
    ("line_no", ">i4"),
    ("customer", ">i4"),
    ("epoch_s", ">i8"),
    ("qty", ">i4"),
    ("price_cents", ">i4"),
)
_STAGE_DTYPE = np.dtype(
    [("nfields", ">i2")] + [pair for name, kind in _STAGE_FIELDS for pair in ((f"len_{name}", ">i4"), (name, kind))]
)


def _binary_rows(columns: dict[str, np.ndarray]) -> bytes:
    """Rows for ``COPY .. FROM STDIN (FORMAT binary)`` built by numpy (fixed-width ints, no NULLs)."""
    n = len(columns["id"])
    rows = np.empty(n, dtype=_STAGE_DTYPE)
    rows["nfields"] = len(_STAGE_FIELDS)
    for name, kind in _STAGE_FIELDS:
        rows[f"len_{name}"] = np.dtype(kind).itemsize
        rows[name] = columns[name]
    return rows.tobytes()


def load(db_name: str, n: int, models_dir: str) -> dict:
    """Schema from the models; lines by binary COPY into a staging table, then one INSERT .. SELECT
    (the importer's stage-then-merge shape); indexes and constraints built after the load."""
    import pandas as pd

    from bench.features import N_PRODUCTS, generate
    from portal.extensions import db
    from portal.models import PurchaseLine

    t0 = time.perf_counter()
    app = _app(db_name, models_dir)
    with app.app_context():
        db.drop_all()
        db.create_all()
        db.engine.dispose()
    table = PurchaseLine.__table__
    data = generate(n)
    n_customers = int(data["n_customers"])
    order = np.argsort(data["date_ns"], kind="stable")  # lines arrive in date order, as imports do
    tx = data["transaction"][order]
    product = data["product"][order]
    # line_no: n-th line of the same product within a transaction (the natural key's third part)
    line_no = pd.DataFrame({"t": tx, "p": product}).groupby(["t", "p"], sort=False).cumcount().to_numpy()
    lines = {
        "id": np.arange(1, n + 1),
        "tx": tx,
        "product": product + 1,
        "line_no": line_no,
        "customer": data["customer"][order] + 1,  # 0 = anonymous (NULL after the merge)
        "epoch_s": data["date_ns"][order] // 10**9,
        "qty": data["quantity"][order].astype(np.int64),
        "price_cents": np.round(data["price"][order] * 100).astype(np.int64),
    }
    del data, order
    t_generated = time.perf_counter()

    with _pg(db_name) as conn, conn.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '1GB'")
        for index in table.indexes:
            cur.execute(f'DROP INDEX "{index.name}"')
        cur.execute("ALTER TABLE purchase_lines DROP CONSTRAINT uq_line_natural_key")
        cur.execute(
            "INSERT INTO stores (id, name, timezone, currency, phone_region, contact_line, sender_name, "
            "created_at) VALUES (1, 'Bench', 'UTC', 'USD', 'US', '', '', now())"
        )
        cur.execute(
            "INSERT INTO products (id, external_id, name) SELECT i, 'P' || lpad((i - 1)::text, 8, '0'), "
            "'Product ' || (i - 1) FROM generate_series(1, %s) AS i",
            (N_PRODUCTS,),
        )
        cur.execute(
            "INSERT INTO customers (id, external_id, name, store_id, sms_consent, created_at) "
            "SELECT i, 'C' || lpad((i - 1)::text, 8, '0'), 'Customer ' || i, 1, 'unknown', now() "
            "FROM generate_series(1, %s) AS i",
            (n_customers,),
        )
        cur.execute(
            "CREATE UNLOGGED TABLE bench_stage (id int8, tx int4, product int4, line_no int4, "
            "customer int4, epoch_s int8, qty int4, price_cents int4)"
        )
        step = 1_000_000
        with cur.copy("COPY bench_stage FROM STDIN WITH (FORMAT binary)") as copy:
            copy.write(_COPY_HEADER)
            for start in range(0, n, step):
                copy.write(_binary_rows({k: v[start : start + step] for k, v in lines.items()}))
            copy.write(_COPY_TRAILER)
        del lines
        t_copied = time.perf_counter()
        cur.execute("SET session_replication_role = replica")  # no FK trigger per row; the data are consistent
        cur.execute(
            "INSERT INTO purchase_lines (id, transaction_ref, product_id, line_no, customer_id, store_id, "
            "purchased_at, quantity, unit_price, amount) "
            "SELECT id, 'T' || lpad(tx::text, 8, '0'), product, line_no, NULLIF(customer, 0), 1, "
            "to_timestamp(epoch_s) AT TIME ZONE 'UTC', qty, price_cents / 100.0, round(qty * price_cents / 100.0, 2) "
            "FROM bench_stage ORDER BY id"
        )
        cur.execute("SET session_replication_role = origin")
        cur.execute("DROP TABLE bench_stage")
        t_merged = time.perf_counter()
        cur.execute(
            "ALTER TABLE purchase_lines ADD CONSTRAINT uq_line_natural_key "
            "UNIQUE (transaction_ref, product_id, line_no)"
        )
        from sqlalchemy.dialects import postgresql
        from sqlalchemy.schema import CreateIndex

        for index in table.indexes:
            cur.execute(str(CreateIndex(index).compile(dialect=postgresql.dialect())))
        for name in ("stores", "products", "customers", "purchase_lines"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT max(id) FROM {name}))")
        t_indexed = time.perf_counter()
        cur.execute("VACUUM ANALYZE")
        cur.execute("SELECT pg_total_relation_size('purchase_lines')")
        size = cur.fetchone()[0]
    done = time.perf_counter()
    return {
        "name": "load/copy",
        "n": n,
        "customers": n_customers,
        "seconds": round(done - t0, 1),
        "generate_seconds": round(t_generated - t0, 1),
        "copy_seconds": round(t_copied - t_generated, 1),
        "merge_seconds": round(t_merged - t_copied, 1),
        "index_seconds": round(t_indexed - t_merged, 1),
        "vacuum_analyze_seconds": round(done - t_indexed, 1),
        "lines_table_mb": round(size / 2**20),
        "peak_rss_mb": _peak_mb(),
    }


def train(db_name: str, models_dir: str) -> dict:
    """Fit the tier model once (as ``flask train segmentation`` would), so scoring has one to use."""
    from threadpoolctl import threadpool_limits

    from portal import model_store
    from portal.extensions import db
    from portal.services import settings as settings_service
    from portal.services.scores.aggregates import customer_features_sql
    from preprocessing import segmentation

    app = _app(db_name, models_dir)
    start = time.perf_counter()
    with app.app_context(), threadpool_limits(limits=1):
        values = settings_service.all_values()
        features = customer_features_sql()
        result = segmentation.fit_segmentation(
            features,
            k=values["tier.k"],
            min_frequency=values["tier.min_frequency"],
            min_monetary=values["tier.min_monetary"],
        )
        params = {"cluster_tiers": {str(k): v for k, v in result.cluster_tiers.items()}}
        model_store.save(
            "segmentation",
            {model_store.SEGMENTATION_FILE: result.kmeans, model_store.SCALER_FILE: result.scaler},
            params=params,
        )
        db.session.commit()
    return {
        "name": "setup/train_tiers",
        "customers": len(features),
        "eligible": result.n_customers,
        "seconds": round(time.perf_counter() - start, 1),
    }


def reset_scores(db_name: str) -> None:
    """Every customer unscored and no tier history, so each scoring case writes the same rows."""
    with _pg(db_name) as conn:
        conn.execute("TRUNCATE tier_changes")
        conn.execute(
            "UPDATE customers SET tier = NULL, scored_at = NULL WHERE tier IS NOT NULL OR scored_at IS NOT NULL"
        )
        conn.execute("VACUUM ANALYZE customers")


# ---------------------------------------------------------------------------------------------
# Measured cases (one subprocess each)
# ---------------------------------------------------------------------------------------------


def _temp_bytes(db_name: str) -> int:
    with _pg(db_name) as conn:
        return int(
            conn.execute("SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]
        )


def features_case(path: str, db_name: str, models_dir: str) -> dict:
    """Feature table only: (a) pull every line + compute_features, or (b) GROUP BY in the database."""
    from threadpoolctl import threadpool_limits

    from portal.services.scores.aggregates import customer_features_sql
    from portal.services.scores.dataset import load_lines
    from preprocessing.features import compute_features

    app = _app(db_name, models_dir)
    out = {}
    with app.app_context(), threadpool_limits(limits=1):
        t0 = time.perf_counter()
        if path == "pandas":
            lines = load_lines()
            t1 = time.perf_counter()
            features = compute_features(lines)
            out.update(
                read_seconds=round(t1 - t0, 2),
                compute_seconds=round(time.perf_counter() - t1, 2),
                lines_frame_mb=round(lines.memory_usage(deep=True).sum() / 2**20),
            )
        else:
            features = customer_features_sql()
        seconds = time.perf_counter() - t0
    return {"customers": len(features), "seconds": round(seconds, 2), **out}


def scoring_case(path: str, db_name: str, models_dir: str) -> dict:
    """A re-score with a trained tier model, no churn/CLV model: features, spend_12m, tiers, stored."""
    from threadpoolctl import threadpool_limits

    from portal.services import settings as settings_service
    from portal.services.scores import scoring
    from portal.services.scores import store as score_store
    from portal.services.scores.dataset import load_lines

    app = _app(db_name, models_dir)
    with app.app_context(), threadpool_limits(limits=1):
        t0 = time.perf_counter()
        # scoring._rescore_all's two sources, minus churn/CLV (no such models; their inputs are lazy)
        inputs = scoring.inputs_from_lines(load_lines()) if path == "pandas" else scoring.inputs_from_database()
        features = inputs.features
        frame = features.copy()
        frame["spend_12m"] = inputs.spend_12m
        t1 = time.perf_counter()
        tiers = scoring.tiers_for(features, settings_service.all_values())
        frame["tier"] = tiers
        t2 = time.perf_counter()
        counts = score_store.store(frame, True, "bench")
        t3 = time.perf_counter()
    return {
        "customers": len(features),
        "tiered": int(tiers.notna().sum()),
        "stored": counts["scored"],
        "seconds": round(t3 - t0, 2),
        "features_seconds": round(t1 - t0, 2),
        "tiers_seconds": round(t2 - t1, 2),
        "store_seconds": round(t3 - t2, 2),
    }


def inputs_case(path: str, db_name: str, models_dir: str) -> dict:
    """Scoring's inputs with every model trained: (a) every line in pandas, or (b) GROUP BYs in the database."""
    from threadpoolctl import threadpool_limits

    from portal.services.scores import scoring
    from portal.services.scores.dataset import load_lines

    app = _app(db_name, models_dir)
    out = {}
    with app.app_context(), threadpool_limits(limits=1):
        t0 = time.perf_counter()
        if path == "pandas":
            lines = load_lines()
            out.update(
                read_seconds=round(time.perf_counter() - t0, 2),
                lines_frame_mb=round(lines.memory_usage(deep=True).sum() / 2**20),
            )
            inputs = scoring.inputs_from_lines(lines)
            del lines  # the inputs keep their own reference, as _rescore_all's frame does
        else:
            inputs = scoring.inputs_from_database()
        t1 = time.perf_counter()
        churn = inputs.churn_features()
        t2 = time.perf_counter()
        summary = inputs.rfm_summary()
        t3 = time.perf_counter()
    return {
        "customers": len(inputs.features),
        "churn_rows": len(churn),
        "clv_rows": len(summary),
        "seconds": round(t3 - t0, 2),
        "features_seconds": round(t1 - t0, 2),
        "churn_seconds": round(t2 - t1, 2),
        "clv_seconds": round(t3 - t2, 2),
        **out,
    }


def check_case(db_name: str, models_dir: str) -> dict:
    """Both paths give the same feature table and the same scoring inputs (values within 1e-9, timestamps exact)."""
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from portal.services.scores import scoring
    from portal.services.scores.aggregates import customer_features_sql
    from portal.services.scores.dataset import load_lines
    from preprocessing.features import compute_features

    tol = {"check_exact": False, "rtol": 1e-9, "atol": 1e-9}
    app = _app(db_name, models_dir)
    with app.app_context(), threadpool_limits(limits=1):
        sql = customer_features_sql()
        lines = load_lines()
        reference = compute_features(lines).sort_index()
        pd.testing.assert_frame_equal(sql, reference, **tol)
        by_sql, by_pandas = scoring.inputs_from_database(), scoring.inputs_from_lines(lines)
        pd.testing.assert_series_equal(by_sql.spend_12m, by_pandas.spend_12m, check_names=False, **tol)
        churn = by_sql.churn_features()
        pd.testing.assert_frame_equal(churn, by_pandas.churn_features(), **tol)
        summary, expected = by_sql.rfm_summary(), by_pandas.rfm_summary()
        expected.index = expected.index.astype(str)  # load_lines' categorical ids
        pd.testing.assert_frame_equal(summary, expected, **tol)
    return {"customers": len(sql), "churn_rows": len(churn), "clv_rows": len(summary), "agree": True}


def run_case(case: str, db_name: str, models_dir: str, n: int) -> dict:
    """Body of a subprocess: one case, with its own wall time, peak memory and PostgreSQL temp-file use."""
    started = time.perf_counter()
    temp_before = _temp_bytes(db_name)
    kind, _, path = case.partition("/")
    if kind == "features":
        result = features_case(path, db_name, models_dir)
    elif kind == "scoring":
        result = scoring_case(path, db_name, models_dir)
    elif kind == "inputs":
        result = inputs_case(path, db_name, models_dir)
    else:
        result = check_case(db_name, models_dir)
    time.sleep(1.0)  # backends flush their statistics (temp_bytes) about once a second
    result = {
        "name": case,
        "n": n,
        **result,
        "process_seconds_in": round(time.perf_counter() - started, 2),
        "peak_rss_mb": _peak_mb(),
        "pg_temp_mb": round((_temp_bytes(db_name) - temp_before) / 2**20),
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }
    return result


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def spawn(args: list[str], timeout: float | None = None) -> dict:
    """Run ``python -m bench.heavy <args>`` in a fresh interpreter; its last stdout line is the JSON.

    A case still running after ``timeout`` seconds is stopped and reported with ``timed_out``.
    """
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.heavy", *args], stdout=subprocess.PIPE, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {
            "name": args[1],
            "timed_out": True,
            "seconds": None,
            "process_seconds": round(time.perf_counter() - started, 2),
        }
    if proc.returncode != 0:
        raise SystemExit(f"bench.heavy {' '.join(args)} failed with exit code {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - started, 2)
    return result


def _pg_tool(tool: str, *args: str) -> None:
    host = ["-h", os.environ.get("BENCH_PG_HOST", "127.0.0.1"), "-U", os.environ.get("BENCH_PG_USER", "postgres")]
    subprocess.run([tool, *host, *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M lines (~100k customers) instead of 10M (~1M)")
    parser.add_argument("--n", type=int, default=None, help="number of purchase lines")
    parser.add_argument("--db", default="loyalist_bench", help="database to create (and drop at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the loaded database for a later --reuse")
    parser.add_argument("--reuse", action="store_true", help="measure on the database a --keep run left")
    parser.add_argument(
        "--scoring",
        action="store_true",
        help="also the scoring cases at full size (always on with --quick; ~1M row updates each)",
    )
    parser.add_argument(
        "--inputs",
        action="store_true",
        help="also scoring's inputs (features, churn, CLV) both ways at full size (always on with --quick)",
    )
    parser.add_argument("--check", action="store_true", help="also check both paths agree at full size")
    parser.add_argument(
        "--pandas-timeout",
        type=float,
        default=900.0,
        help="seconds before the pandas reference is stopped (reported as timed_out)",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--models-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.n or (1_000_000 if args.quick else 10_000_000)

    if args.case:
        if args.case == "load":
            result = load(args.db, n, args.models_dir)
        elif args.case == "train":
            result = train(args.db, args.models_dir)
        else:
            result = run_case(args.case, args.db, args.models_dir, n)
        print(json.dumps(result), flush=True)
        return

    if args.db in ("test", "postgres", "template0", "template1"):
        raise SystemExit(f"refusing to use the {args.db!r} database: give --db a database of its own")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still drop the database when stopped
    models_dir = tempfile.mkdtemp(prefix="bench-heavy-models-")
    common = ["--db", args.db, "--models-dir", models_dir, "--n", str(n)]
    reference: dict[str, dict] = {}

    def report(result: dict) -> None:
        """Print a case; the pandas case of each kind is the reference its SQL twin is divided by."""
        result["n"] = n
        kind = result["name"].split("/")[0]
        if result["name"].endswith("/pandas"):
            reference[kind] = result
        elif kind in reference and result.get("seconds") is not None:
            ref = reference[kind]
            if ref.get("seconds"):
                result["ratio"] = round(result["seconds"] / ref["seconds"], 3)
                result["rss_ratio"] = round(result["peak_rss_mb"] / ref["peak_rss_mb"], 3)
            else:  # the reference was stopped: the ratio is at most this
                result["ratio_at_most"] = round(result["seconds"] / ref["process_seconds"], 3)
        print(json.dumps(result), flush=True)

    try:
        if not args.reuse:
            _pg_tool("dropdb", "--if-exists", "--force", args.db)
            _pg_tool("createdb", args.db)
            print(json.dumps(spawn(["--case", "load", *common])), flush=True)
        report(spawn(["--case", "features/pandas", *common], args.pandas_timeout))
        report(spawn(["--case", "features/sql", *common]))
        if args.quick or args.scoring:
            print(json.dumps(spawn(["--case", "train", *common])), flush=True)
            reset_scores(args.db)
            report(spawn(["--case", "scoring/pandas", *common], args.pandas_timeout))
            reset_scores(args.db)
            report(spawn(["--case", "scoring/sql", *common]))
        if args.quick or args.inputs:
            report(spawn(["--case", "inputs/pandas", *common], args.pandas_timeout))
            report(spawn(["--case", "inputs/sql", *common]))
        if args.quick or args.check:
            print(json.dumps(spawn(["--case", "check", *common])), flush=True)
    finally:
        if not args.keep:
            _pg_tool("dropdb", "--if-exists", "--force", args.db)
        for name in os.listdir(models_dir):
            os.unlink(os.path.join(models_dir, name))
        os.rmdir(models_dir)


if __name__ == "__main__":
    main()
