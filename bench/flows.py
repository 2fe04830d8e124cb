"""Automations benchmark: the daily run of all six flows (rules, exclusions, entries, outbox) for 100k
customers (target: < 10 s), and the same run repeated (it adds nobody: the episode keys hold).

    python -m bench.flows [--quick] [--database-url URL]

One JSON line per measurement: name, n (customers), seconds, entered (customers entered today),
peak_rss_mb. Sending is not timed here (bench.sms measures the sender): the run stops once the
day's outboxes are written. Each case runs in its own process on a fresh SQLite file (or the given
database, emptied first).
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

ROOT = Path(__file__).resolve().parents[1]


def _populate(n: int, now) -> None:
    """n customers of one store, each flow's rule naming a share of them; a bundle rule and its buyers."""
    from datetime import date, datetime, timedelta

    from sqlalchemy import insert

    from portal.extensions import db
    from portal.models import BundleRule, Customer, ModelRecord, Product, PurchaseLine, Store, TierChange

    db.session.add(Store(name="Bench", timezone="UTC", sender_name="Bench", contact_line="Bench store"))
    db.session.add_all([Product(external_id="P1", name="Partner"), Product(external_id="P9", name="Dead")])
    db.session.commit()
    today = now.date()
    area = ["202", "212", "305", "312", "415", "512", "617", "646", "713", "917"]
    tiers = ("Platinum", "Gold", "Silver", "Bronze", None)
    rows = []
    for i in range(n):
        tier = tiers[i % 5]
        last = datetime.combine(today - timedelta(days=5 + i % 200), datetime.min.time())
        frequency = 1 if i % 10 == 0 else 2 + i % 7
        rows.append(
            {
                "external_id": f"B{i:07d}",
                "name": f"Name{i} Surname",
                "store_id": 1,
                "sms_consent": "opted_in" if i % 17 else "opted_out",
                "phone": f"+1{area[i % 10]}{200 + (i // 10000) % 800:03d}{i % 10000:04d}",
                "tier": tier,
                # Each tier's spend in its own band (Bronze 100-499, Silver 500-899, …): some are near the next.
                "monetary": 100 + 400 * (3 - tiers.index(tier)) + (i % 400) if tier else 50 + i % 50,
                "frequency": frequency,
                "first_purchase_at": last - timedelta(days=0 if frequency == 1 else 200),
                "last_purchase_at": last,
                "avg_purchase_gap_days": None if frequency == 1 else 20 + i % 60,
                "churn_band": ("High", "Medium", "Low", "Low", "Low")[i % 5 - 1],
                "lifecycle": ("Lost" if i % 50 == 0 else "Active"),
                "birthday": date(1980 + i % 30, 1 + i % 12, 1 + (i // 12) % 28),
                "scored_at": now - timedelta(hours=1),
            }
        )
    db.session.execute(insert(Customer.__table__), rows)
    db.session.execute(
        insert(TierChange.__table__),
        [
            {
                "customer_id": i + 1,
                "at": now - timedelta(hours=1),
                "old_tier": "Silver",
                "new_tier": "Gold",
                "reason": "bench",
            }
            for i in range(1, n, 50)
        ],
    )
    record = ModelRecord(name="bundles", files={}, manifest={}, active=True)
    db.session.add(record)
    db.session.flush()
    db.session.add(
        BundleRule(
            model_id=record.id,
            antecedents=["P1"],
            consequents=["P9"],
            antecedent_names="Partner",
            consequent_names="Dead",
            support=0.1,
            confidence=0.2,
            lift=1.2,
            baskets=50,
        )
    )
    db.session.execute(
        insert(PurchaseLine.__table__),
        [
            {
                "transaction_ref": f"T{i}",
                "product_id": 1,
                "line_no": 0,
                "customer_id": i + 1,
                "store_id": 1,
                "purchased_at": datetime.combine(today - timedelta(days=1 + i % 10), datetime.min.time()),
                "quantity": 1,
                "unit_price": 10,
                "amount": 10,
            }
            for i in range(0, n, 20)
        ],
    )
    db.session.commit()


def child(n: int, database_url: str, daily_limit: int) -> dict:
    from datetime import datetime, timezone

    from app import create_app
    from portal.config import TestConfig
    from portal.extensions import db
    from portal.models import Store
    from portal.services.flows import runner

    cfg = TestConfig(database_url=database_url)
    cfg.JOBS_INLINE, cfg.REDIS_URL = True, None
    app = create_app(cfg)
    now = datetime(2026, 6, 15, 15, 0, tzinfo=timezone.utc)
    with app.app_context():
        db.drop_all()
        db.create_all()
        _populate(n, now)
        store = db.session.get(Store, 1)
        for flow in runner.ensure_flows(store):
            flow.enabled, flow.daily_limit = True, daily_limit
        db.session.commit()
        start = time.perf_counter()
        runs = runner.run_store(store, now=now, send=False)
        first = time.perf_counter() - start
        start = time.perf_counter()
        again = runner.run_store(store, now=now, send=False)
        second = time.perf_counter() - start
        return {
            "seconds": first,
            "entered": sum(r.entered for r in runs),
            "per_flow": {r.kind: r.entered for r in runs},
            "repeat_seconds": second,
            "repeat_entered": sum(r.entered for r in again),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k customers (a smoke run)")
    parser.add_argument("--database-url", default=None, help="run on this database (it is emptied!)")
    parser.add_argument("--child", nargs=3, metavar=("N", "URL", "LIMIT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        os.environ.pop("REDIS_URL", None)
        print(json.dumps(child(int(args.child[0]), args.child[1], int(args.child[2]))))
        return
    n = 10_000 if args.quick else 100_000
    # The default daily limit (500 entries per flow), and none: the day a store switches every flow on
    # with no limit, when over half of this population enters at once.
    for label, limit in (("default_daily_limit", 500), ("no_daily_limit", 1_000_000)):
        with tempfile.TemporaryDirectory() as tmp:
            url = args.database_url or f"sqlite:///{tmp}/bench.db"
            proc = subprocess.run(
                [sys.executable, "-m", "bench.flows", "--child", str(n), url, str(limit)],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise SystemExit(f"bench.flows failed:\n{proc.stderr[-3000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            peak = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        backend = "postgresql" if url.startswith("postgresql") else "sqlite"
        common = {"backend": backend, "n": n, "case": label, "peak_rss_mb": peak}
        print(
            json.dumps(
                {
                    "name": "flows_daily_run",
                    **common,
                    "seconds": round(result["seconds"], 3),
                    "entered": result["entered"],
                    "per_flow": result["per_flow"],
                    "target_seconds": 10.0,
                }
            ),
            flush=True,
        )
        print(
            json.dumps(
                {
                    "name": "flows_daily_run_repeated",
                    **common,
                    "seconds": round(result["repeat_seconds"], 3),
                    "entered": result["repeat_entered"],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
