"""Server time of the portal's pages at scale (issue #25): dashboard, tiers, churn, a campaign's results,
the customer list and a customer page, against a bare Flask 50-row Jinja table measured in the same run.

    python -m bench.pages                      # 100,000 customers (SQLite file in a temp folder)
    python -m bench.pages --quick              # 20,000 customers
    python -m bench.pages --customers 1000000
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench_s3 python -m bench.pages   # on PostgreSQL

The store is built with ``bench.lists.setup`` (customers across 10 stores with their scored columns:
tier, band, churn probability, CLV...), then this module adds what those pages read: a lifecycle,
12-month spend and churn priority for every customer, a store manager (of "Store 0"), one customer of
that store with ~50 purchase lines in 12 baskets, and a finished campaign with outbox rows for ~10 % of
the customers (a tenth of them in the control group, some delivered, failed, redeemed), all inserted
with SQLAlchemy Core. ``--sqlite PATH --reuse`` keeps and reuses a SQLite build between runs
(``--reuse`` with DATABASE_URL reuses the database as it is).

Each page is requested through the Flask test client (the whole request: session, login check, queries,
template, no network), as an admin and as the store manager: a few warm-up requests, then ``--requests``
(default 30) timed with ``time.perf_counter`` around ``client.get``. One JSON line per page and role:
name, role, n, database, median_ms, p95_ms, target_ms (10), reference_median_ms, ratio (page median / reference
median), path. The reference is bench/load.py's bare Flask app rendering a 50-row Jinja table, through its own
test client in the same process: alone first (``reference.bare_flask_table``), then one reference request after
each page request, so the ratio compares the two under the same load (the machine may be shared).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from bench import lists as list_bench

TARGET_MS = 10
MANAGER_EMAIL, MANAGER_PASSWORD = "manager@example.com", "bench-manager-123"
CAMPAIGN_SHARE = 10  # one customer in 10 is a recipient
BASKETS, LINES = 12, 50
_NEXT_LINK = re.compile(r'href="([^"]*after=[^"]*)" rel="next"')


def _enrich(url: str, n: int) -> None:
    """Add to a ``bench.lists`` build what the dashboard, tiers, churn, campaign and customer pages read."""
    from sqlalchemy import BigInteger, case, cast, func, insert, select, update

    from portal.extensions import db
    from portal.models import Campaign, Customer, OutboxMessage, Product, PurchaseLine, Store, User

    app = list_bench._app(url)
    with app.app_context():
        c = Customer.__table__.c
        scored = datetime(2026, 1, 1, tzinfo=timezone.utc)
        # bench.lists gives tier, band and store by i % 5, % 4 and % 10, so some combinations never occur (no
        # Gold customer in Store 0). Redraw them from multiplicative hashes of the id (independent of the store)
        # with the shares of a real store, and make spend, risk and lifecycle agree with them.
        big = cast(c.id, BigInteger)
        h1, h2, h3 = (big * 2654435761) % 1000, (big * 40503 + 17) % 1000, (big * 97 + 31) % 100
        tier = case((h1 < 50, "Platinum"), (h1 < 150, "Gold"), (h1 < 350, "Silver"), (h1 < 600, "Bronze"), else_=None)
        floor = case((h1 < 50, 4000), (h1 < 150, 2000), (h1 < 350, 800), (h1 < 600, 250), else_=0)
        risk = case((h2 < 100, None), else_=(h2 - 100) / 900.0)
        band = case((h2 < 100, None), (h2 >= 730, "High"), (h2 >= 370, "Medium"), else_="Low")
        lifecycle = case(
            (h2 < 100, None),
            (h2 >= 900, "Lost"),
            (h2 >= 800, "Lapsing"),
            (h2 >= 600, "At risk"),
            (h3 < 10, "New"),
            else_="Active",
        )
        db.session.execute(
            update(Customer.__table__).values(
                tier=tier,
                monetary=floor + h3 * 7.5,
                spend_12m=(floor + h3 * 7.5) / 2,
                churn_probability=risk,
                churn_band=band,
                lifecycle=lifecycle,
                p_return_12m=1 - func.coalesce(risk, 0.5),
                churn_priority=risk * c.clv_12m,
            )
        )
        db.session.commit()
        store0 = db.session.scalar(select(Store).where(Store.name == "Store 0"))
        manager = User(email=MANAGER_EMAIL, role="manager", store_id=store0.id)
        manager.set_password(MANAGER_PASSWORD)
        db.session.add(manager)
        # One customer of Store 0 with 50 lines in 12 baskets over the last year.
        story = db.session.scalar(
            select(Customer).where(Customer.external_id == f"M{(n // 2) // list_bench.STORES * list_bench.STORES:07d}")
        )
        db.session.execute(insert(Product), [{"external_id": f"P{i:03d}", "name": f"Product {i}"} for i in range(20)])
        pids = db.session.scalars(select(Product.id).order_by(Product.id)).all()
        lines = []
        for i in range(LINES):
            basket = i % BASKETS
            lines.append(
                {
                    "transaction_ref": f"STORY-{basket:02d}",
                    "product_id": pids[(i * 7) % len(pids)],
                    "line_no": i // BASKETS,
                    "customer_id": story.id,
                    "store_id": store0.id,
                    "purchased_at": datetime(2025, 12, 20, 15) - timedelta(days=30 * basket),
                    "quantity": Decimal(1 + i % 3),
                    "unit_price": Decimal("4.50"),
                    "amount": Decimal("4.50") * (1 + i % 3),
                }
            )
        db.session.execute(insert(PurchaseLine), lines)
        campaign = Campaign(
            name="Bench win-back",
            audience="band=High",
            template="Hi {first_name}, 10% off this week: {coupon}",
            control_share=0.1,
            status="done",
            created_by=list_bench.EMAIL,
            created_at=scored,
            started_at=scored + timedelta(hours=1),
            finished_at=scored + timedelta(hours=2),
        )
        db.session.add(campaign)
        db.session.commit()
        ids = db.session.scalars(select(Customer.id).where(Customer.id % CAMPAIGN_SHARE == 0).order_by(Customer.id))
        batch = []
        for k, cid in enumerate(ids):
            control = k % 10 == 0
            status = "skipped" if control else ("delivered", "delivered", "sent", "failed")[k % 4]
            batch.append(
                {
                    "campaign_id": campaign.id,
                    "customer_id": cid,
                    "group": "control" if control else "message",
                    "phone": f"+1202{cid:07d}",
                    "body": None if control else "Hi, 10% off this week",
                    "coupon_code": None if control else f"BENCH{cid}",
                    "status": status,
                    "attempts": 0 if control else 1,
                    "error_code": 30003 if status == "failed" else None,
                    "sent_at": None if control else scored + timedelta(hours=1, seconds=k % 3600),
                    "delivered_at": scored + timedelta(hours=1, minutes=5) if status == "delivered" else None,
                    "redeemed_at": scored + timedelta(days=3) if status == "delivered" and k % 20 == 0 else None,
                }
            )
            if len(batch) == 20_000:
                db.session.execute(insert(OutboxMessage), batch)
                batch = []
        if batch:
            db.session.execute(insert(OutboxMessage), batch)
        db.session.commit()
        # The score update rewrote every row: clean the old versions out of the indexes, as autovacuum would
        # after a rescore, so plans and timings are those of a settled database.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE" if db.engine.dialect.name == "postgresql" else "ANALYZE")


def _login(app, email: str, password: str):
    client = app.test_client()
    response = client.post("/login", data={"email": email, "password": password})
    assert response.status_code == 302, (email, response.status_code)
    return client


def _time(client, path: str, requests: int, warmup: int = 3, reference=None) -> tuple[list[float], list[float]]:
    """Server times of ``requests`` GETs of ``path`` after ``warmup``; with ``reference`` (a test client of the bare
    table), each request is followed by one of the reference, so both see the same load on a shared machine."""
    for _ in range(warmup):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
    times, ref_times = [], []
    for _ in range(requests):
        start = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, (path, response.status_code)
        if reference is not None:
            start = time.perf_counter()
            reference.get("/")
            ref_times.append(time.perf_counter() - start)
    return times, ref_times


def _summary(times: list[float]) -> dict:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": round(statistics.median(times) * 1000, 2), "p95_ms": round(p95 * 1000, 2)}


def bare_table():
    """A test client of bench/load.py's bare Flask app (a 50-row Jinja table at ``/``)."""
    from bench.load import BARE_APP

    namespace: dict = {"__name__": "bare_table"}
    exec(compile(BARE_APP, "bare_table.py", "exec"), namespace)
    return namespace["app"].test_client()


def _paths(app, client, n: int) -> dict[str, str]:
    """The pages to time: fixed paths, plus the campaign, the story customer and a keyset page found by id."""
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Campaign, Customer, Store

    with app.app_context():
        campaign_id = db.session.scalar(select(Campaign.id).where(Campaign.name == "Bench win-back"))
        story_id = db.session.scalar(
            select(Customer.id).where(
                Customer.external_id == f"M{(n // 2) // list_bench.STORES * list_bench.STORES:07d}"
            )
        )
        silver = db.session.scalar(
            select(Customer.id)
            .join(Store, Store.id == Customer.store_id)
            .where(Store.name == "Store 0", Customer.tier == "Silver", Customer.id >= n // 2)
            .order_by(Customer.id)
            .limit(1)
        )
    filtered = "/customers?tier=Gold&band=High"
    body = client.get(filtered).get_data(as_text=True)
    found = _NEXT_LINK.search(body)
    return {
        "dashboard": "/",
        "tiers": "/tiers",
        "churn": "/churn",
        "campaign_results": f"/campaigns/{campaign_id}",
        "customers.first_page": "/customers",
        "customers.filtered": filtered,
        "customers.filtered_after": html.unescape(found.group(1)) if found else None,
        # the list's export panel fetches its live row count (two COUNTs over the filter) as a second request
        "customers.export_count": "/segments/count?list=customers",
        "customers.filtered_export_count": "/segments/count?tier=Gold&band=High&list=customers",
        "customer_page": f"/customers/{story_id}",
        # a tier holder below the top tier: the page adds "how far to the next reward" (the tiers' lowest spends)
        "customer_page.silver": f"/customers/{silver}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 customers instead of 100,000")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page (after 3 warm-ups)")
    parser.add_argument("--sqlite", default=None, help="SQLite file to build (default: a temp folder)")
    parser.add_argument("--reuse", action="store_true", help="reuse an existing build of the same size")
    parser.add_argument("--only", default=None, help="comma-separated page names to time (default: all)")
    args = parser.parse_args(argv)
    n = args.customers or (20_000 if args.quick else 100_000)
    tmp = None
    if os.environ.get("DATABASE_URL"):
        url = list_bench._url(os.environ["DATABASE_URL"])
    else:
        if args.sqlite is None:
            tmp = tempfile.TemporaryDirectory(prefix="bench-pages-")
            args.sqlite = os.path.join(tmp.name, "bench.db")
        url = f"sqlite:///{os.path.abspath(args.sqlite)}"
    try:
        if not (args.reuse and _built(url, n)):
            start = time.perf_counter()
            list_bench.setup(url, n)
            _enrich(url, n)
            print(f"built {n} customers in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        app = list_bench._app(url)
        database = url.split(":")[0].split("+")[0]
        bare = bare_table()
        ref = _summary(_time(bare, "/", args.requests)[0])
        print(json.dumps({"name": "reference.bare_flask_table", "n": 50, "database": None, **ref}), flush=True)
        clients = {
            "admin": _login(app, list_bench.EMAIL, list_bench.PASSWORD),
            "manager": _login(app, MANAGER_EMAIL, MANAGER_PASSWORD),
        }
        only = set(args.only.split(",")) if args.only else None
        for role, client in clients.items():
            for name, path in _paths(app, client, n).items():
                if path is None or (only and name not in only):
                    continue
                if role == "manager" and name == "campaign_results":
                    continue  # the bench campaign is chain-wide: a store manager gets a 404
                times, ref_times = _time(client, path, args.requests, reference=bare)
                result, beside = _summary(times), _summary(ref_times)
                record = {
                    "name": name,
                    "role": role,
                    "n": n,
                    "database": database,
                    **result,
                    "target_ms": TARGET_MS,
                    "reference_median_ms": beside["median_ms"],
                    "ratio": round(result["median_ms"] / beside["median_ms"], 1),
                    "path": path[:120],
                }
                print(json.dumps(record), flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


def _built(url: str, n: int) -> bool:
    """Whether ``url`` already holds this bench's build of ``n`` customers with today's tables and columns (for
    ``--reuse``; a build older than a model change is rebuilt)."""
    from sqlalchemy import create_engine, select, text

    import portal.models  # noqa: F401  (registers the tables)
    from portal.extensions import db

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM customers")).scalar()
            campaign = conn.execute(text("SELECT count(*) FROM campaigns WHERE name = 'Bench win-back'")).scalar()
            for table in db.metadata.sorted_tables:  # raises on a missing table or column
                conn.execute(select(*table.c).limit(0)).all()
        return count == n and campaign == 1
    except Exception:
        return False
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
