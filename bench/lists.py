"""Lists and exports at scale: the customer list's response times and the streamed CSV export.

    python -m bench.lists            # 1,000,000 customers (SQLite file in a temp folder)
    python -m bench.lists --quick    # 50,000 customers
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench python -m bench.lists   # on PostgreSQL

Prints one JSON line per measurement: name, n, seconds, peak_rss_mb (of the subprocess that ran
the case), ratio (to the reference of its group measured in the same run: list pages to the first
page, the export to a raw read of the same rows without formatting), plus case details.
Each case runs in its own subprocess so peak memory is the case's own.
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
from decimal import Decimal

STORES = 10
TIERS = ("Platinum", "Gold", "Silver", "Bronze", None)
BANDS = ("High", "Medium", "Low", None)
EMAIL, PASSWORD = "bench@example.com", "bench-password-123"


def _app(url: str):
    from app import create_app
    from portal.config import TestConfig

    config = TestConfig(database_url=url)
    config.WTF_CSRF_ENABLED = False  # the bench logs in with a plain POST
    return create_app(config)


def _url(raw: str) -> str:
    return "postgresql+psycopg://" + raw[len("postgresql://") :] if raw.startswith("postgresql://") else raw


def setup(url: str, n: int) -> None:
    """Create the schema and n customers across 10 stores (bulk insert via SQLAlchemy Core)."""
    from datetime import datetime, timezone

    from sqlalchemy import insert

    from portal.extensions import db
    from portal.models import Customer, Store, User

    app = _app(url)
    with app.app_context():
        db.drop_all()
        db.create_all()
        stores = [Store(name=f"Store {i}") for i in range(STORES)]
        db.session.add_all(stores)
        admin = User(email=EMAIL, role="admin")
        admin.set_password(PASSWORD)
        db.session.add(admin)
        db.session.commit()
        ids = [s.id for s in stores]
        scored = datetime(2026, 1, 1, tzinfo=timezone.utc)
        batch = []
        for i in range(n):
            band = BANDS[i % 4]
            batch.append(
                {
                    "external_id": f"M{i:07d}",
                    "name": f"Customer {i % 50000}",
                    "phone": f"+1202{i:07d}",
                    "email": f"c{i}@example.com",
                    "store_id": ids[i % STORES],
                    "sms_consent": ("opted_in", "unknown", "opted_out")[i % 3],
                    "tier": TIERS[i % 5],
                    "monetary": Decimal(i % 20000) / 4,
                    "frequency": i % 60,
                    "recency": i % 400,
                    "total_quantity": float(i % 300),
                    "num_unique_products": i % 50,
                    "avg_price_per_unit": 3.25,
                    "store_visit_frequency": i % 40,
                    "active_days": i % 700,
                    "avg_purchase_gap_days": 12.5,
                    "churn_probability": None if band is None else (i % 1000) / 1000,
                    "churn_band": band,
                    "p_alive": 0.5,
                    "expected_purchases_90d": 1.25,
                    "clv_12m": Decimal(i % 3000),
                    "scored_at": scored,
                }
            )
            if len(batch) == 20_000:
                db.session.connection().execute(insert(Customer.__table__), batch)
                batch = []
        if batch:
            db.session.connection().execute(insert(Customer.__table__), batch)
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE customers")
                conn.commit()
        else:
            with db.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()


def _client(url: str):
    app = _app(url)
    client = app.test_client()
    response = client.post("/login", data={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 302, response.status_code
    return app, client


def _deep_cursor(app, sort_col: str, n: int) -> str:
    """The ``after`` cursor of the row in the middle of the list sorted by ``sort_col`` descending."""
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Customer
    from portal.services.lists.paging import _encode

    with app.app_context():
        col = getattr(Customer, sort_col)
        row = db.session.execute(
            select(col, Customer.id)
            .where(col.isnot(None))
            .order_by(col.desc(), Customer.id.desc())
            .offset(n // 2)
            .limit(1)
        ).one()
        return json.dumps([_encode(row[0]), row[1]])


def case_page(url: str, n: int, name: str) -> dict:
    app, client = _client(url)
    paths = {
        "list_first_page": "/customers",
        "list_deep_page_by_id": "/customers?after=" + json.dumps([None, n // 2]),
        "list_sorted_by_spend_first_page": "/customers?sort=-monetary",
        "list_sorted_by_spend_deep_page": None,
        "list_filtered_gold_high": "/customers?tier=Gold&band=High",
        "list_filtered_store_sorted_by_risk": "/customers?store=Store+3&sort=-churn_probability",
        "list_search_name": "/customers?q=Customer+4242",
        # prefix search (services/customers/search.py): any case, from the search_* indexes
        "list_search_id_prefix": "/customers?q=m00012",
        "list_search_name_prefix": "/customers?q=customer+49",
        "list_search_phone_national": "/customers?q=(202)+000-12",
        "list_search_one_match": "/customers?q=M0999999",
        "list_search_one_letter": "/customers?q=c",
    }
    path = paths[name]
    if name == "list_sorted_by_spend_deep_page":
        from urllib.parse import quote

        path = "/customers?sort=-monetary&after=" + quote(_deep_cursor(app, "monetary", n))
    client.get(path)  # warm caches once; the timing is the best of three
    times = []
    for _ in range(3):
        start = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200
        assert b"/customers/" in response.data, name
    return {"seconds": round(min(times), 4), "path": path[:120]}


def case_export(url: str, n: int, name: str) -> dict:
    app, client = _client(url)
    if name == "export_raw_read":
        from portal.services.lists import exports

        with app.test_request_context():
            start = time.perf_counter()
            export = exports.prepare("customers", {"include_opted_out": "1"}, None)
            rows = 0
            result = exports.db.session.execute(export.statement().execution_options(yield_per=exports.BATCH))
            for part in result.partitions():
                rows += len(part)
            return {"seconds": round(time.perf_counter() - start, 3), "rows": rows}
    start = time.perf_counter()
    response = client.get("/customers?format=csv&include_opted_out=1", buffered=False)
    first = first_rows = None
    size = lines = 0
    for chunk in response.response:
        if first is None:
            first = time.perf_counter() - start
        elif first_rows is None:
            first_rows = time.perf_counter() - start
        size += len(chunk)
        lines += chunk.count(b"\n") if isinstance(chunk, bytes) else chunk.count("\n")
    response.close()
    total = time.perf_counter() - start
    assert lines == n + 1, lines
    return {
        "seconds": round(total, 3),
        "ttfb_seconds": round(first, 4),
        "first_rows_seconds": round(first_rows, 4),
        "rows": lines - 1,
        "mb": round(size / 2**20, 1),
        "rows_per_second": round((lines - 1) / total),
    }


def run_case(url: str, n: int, name: str) -> None:
    result = case_export(url, n, name) if name.startswith("export") else case_page(url, n, name)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))


PAGE_CASES = (
    "list_first_page",
    "list_deep_page_by_id",
    "list_sorted_by_spend_first_page",
    "list_sorted_by_spend_deep_page",
    "list_filtered_gold_high",
    "list_filtered_store_sorted_by_risk",
    "list_search_name",
    "list_search_id_prefix",
    "list_search_name_prefix",
    "list_search_phone_national",
    "list_search_one_match",
    "list_search_one_letter",
)
EXPORT_CASES = ("export_raw_read", "export_csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 customers instead of 1,000,000")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.n or (50_000 if args.quick else 1_000_000)
    if args.setup:
        setup(args.url, n)
        return
    if args.case:
        run_case(args.url, n, args.case)
        return

    tmp = None
    if os.environ.get("DATABASE_URL"):
        url = _url(os.environ["DATABASE_URL"])
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-lists-")
        url = f"sqlite:///{tmp.name}/bench.db"
    backend = url.split(":")[0].split("+")[0]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench.lists", "--setup", "--url", url, "--n", str(n)], check=True, env=env)
    print(
        json.dumps(
            {"name": "setup_bulk_insert", "n": n, "backend": backend, "seconds": round(time.perf_counter() - start, 2)}
        ),
        flush=True,
    )
    refs: dict[str, float] = {}
    for group, cases in (("page", PAGE_CASES), ("export", EXPORT_CASES)):
        for name in cases:
            out = subprocess.run(
                [sys.executable, "-m", "bench.lists", "--case", name, "--url", url, "--n", str(n)],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            refs.setdefault(group, result["seconds"])
            ratio = round(result["seconds"] / refs[group], 2) if refs[group] else None
            print(
                json.dumps(
                    {
                        "name": name,
                        "n": n,
                        "backend": backend,
                        "seconds": result.pop("seconds"),
                        "peak_rss_mb": result.pop("peak_rss_mb"),
                        "ratio": ratio,
                        **result,
                    }
                ),
                flush=True,
            )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
