"""SMS benchmark: creating a campaign's outbox (target: 100k recipients in < 5 s) and the
sustained send rate against the recording fake Twilio (tests/sms/fake_twilio.py).

    python -m bench.sms [--quick] [--database-url URL]

One JSON line per measurement: name, n, seconds, peak_rss_mb, ratio (to the reference of the
same run: a bare Core insert of the same rows for the outbox; the dry-run gateway for sending,
i.e. the engine's own database work without HTTP). Each case runs in its own process on a
fresh SQLite file (or the given database, emptied first) so peak memory is the case's own.
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


def _app(database_url: str, **config):
    from app import create_app
    from portal.config import TestConfig
    from portal.extensions import db

    cfg = TestConfig(database_url=database_url)
    cfg.JOBS_INLINE, cfg.REDIS_URL = True, None
    for key, value in config.items():
        setattr(cfg, key, value)
    app = create_app(cfg)
    with app.app_context():
        db.drop_all()
        db.create_all()
    return app


def _populate(n: int) -> None:
    """n opted-in customers with valid US mobile-capable numbers in one store (bulk insert)."""
    from datetime import datetime, timezone

    from sqlalchemy import insert

    from portal.extensions import db
    from portal.models import Customer, Store

    db.session.add(Store(name="Bench", timezone="UTC", sender_name="Bench", contact_line="Bench store"))
    db.session.commit()
    area = ["202", "212", "305", "312", "415", "512", "617", "646", "713", "917"]
    when = datetime(2025, 1, 1, tzinfo=timezone.utc)
    rows = [
        {
            "external_id": f"B{i:07d}",
            "name": f"Name{i} Surname",
            "store_id": 1,
            "sms_consent": "opted_in",
            "sms_consent_at": when,
            "phone": f"+1{area[i % 10]}{200 + (i // 10000) % 800:03d}{i % 10000:04d}",
            "tier": ("Gold", "Silver", None)[i % 3],
        }
        for i in range(n)
    ]
    db.session.execute(insert(Customer.__table__), rows)
    db.session.commit()


def child_outbox(n: int, database_url: str, reference: bool) -> dict:
    from sqlalchemy import insert, select

    from portal.extensions import db
    from portal.models import Campaign, Customer, OutboxMessage
    from portal.services.campaigns import campaigns

    app = _app(database_url)
    with app.app_context():
        _populate(n)
        start = time.perf_counter()
        if reference:  # the floor: one Campaign and n plain outbox rows, no rules applied
            campaign = Campaign(name="ref", template="x", status="draft")
            db.session.add(campaign)
            db.session.flush()
            ids = db.session.scalars(select(Customer.id)).all()
            db.session.execute(
                insert(OutboxMessage.__table__),
                [
                    {
                        "campaign_id": campaign.id,
                        "customer_id": cid,
                        "group": "message",
                        "status": "pending",
                        "attempts": 0,
                        "body": "Bench: hello. Reply STOP to opt out",
                        "coupon_code": f"R{cid}",
                    }
                    for cid in ids
                ],
            )
            db.session.commit()
        else:
            campaigns.create_campaign(
                "Bench",
                {},
                "Hi {first_name}, {tier} members get {reward}. Code {code}, until {expires}",
                control_share=0.1,
            )
        return {"seconds": time.perf_counter() - start}


def child_send(n: int, database_url: str, dry_run: bool) -> dict:
    sys.path.insert(0, str(ROOT / "tests" / "sms"))
    from fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

    from portal.services.campaigns import campaigns
    from portal.services.campaigns.sending import SendOptions, send_campaign
    from portal.sms import DryRunGateway, TwilioGateway

    app = _app(database_url)
    with app.app_context(), FakeTwilio(AUTH_TOKEN) as fake:
        _populate(n)
        campaign = campaigns.create_campaign("Bench", {}, "Hi {first_name}, code {code}", control_share=0)
        gateway = (
            DryRunGateway()
            if dry_run
            else TwilioGateway(ACCOUNT_SID, AUTH_TOKEN, from_number="+15005550006", api_base=fake.base_url)
        )
        opts = SendOptions(rate_per_second=10_000, quiet_start="00:00", quiet_end="00:00")
        start = time.perf_counter()
        send_campaign(campaign.id, gateway, opts)
        seconds = time.perf_counter() - start
        sent = len(fake.messages)
        if not dry_run:
            assert sent == n, f"fake received {sent} of {n}"
        return {"seconds": seconds, "per_second": n / seconds}


def run_case(case: str, n: int, database_url: str | None) -> dict:
    """Run one case in a child process; returns its result with the child's peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite:///{tmp}/bench.db"
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc = subprocess.run(
            [sys.executable, "-m", "bench.sms", "--child", case, str(n), url], cwd=ROOT, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SystemExit(f"{case} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result["peak_rss_mb"] = round(max(peak, before) / 1024, 1)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--database-url", default=None, help="run on this database (it is emptied!)")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "N", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, n, url = args.child[0], int(args.child[1]), args.child[2]
        os.environ.pop("REDIS_URL", None)
        funcs = {
            "outbox": lambda: child_outbox(n, url, False),
            "outbox_reference": lambda: child_outbox(n, url, True),
            "send": lambda: child_send(n, url, False),
            "send_dry_run": lambda: child_send(n, url, True),
        }
        print(json.dumps(funcs[case]()))
        return
    outbox_n = 10_000 if args.quick else 100_000
    send_n = 200 if args.quick else 2_000
    ref = run_case("outbox_reference", outbox_n, args.database_url)
    print(
        json.dumps(
            {
                "name": "outbox_reference_core_insert",
                "n": outbox_n,
                "seconds": round(ref["seconds"], 3),
                "peak_rss_mb": ref["peak_rss_mb"],
                "ratio": 1.0,
            }
        ),
        flush=True,
    )
    res = run_case("outbox", outbox_n, args.database_url)
    print(
        json.dumps(
            {
                "name": "campaign_create_outbox",
                "n": outbox_n,
                "seconds": round(res["seconds"], 3),
                "peak_rss_mb": res["peak_rss_mb"],
                "ratio": round(res["seconds"] / ref["seconds"], 2),
                "target_seconds": 5.0,
            }
        ),
        flush=True,
    )
    dry = run_case("send_dry_run", send_n, args.database_url)
    print(
        json.dumps(
            {
                "name": "send_dry_run",
                "n": send_n,
                "seconds": round(dry["seconds"], 3),
                "peak_rss_mb": dry["peak_rss_mb"],
                "messages_per_second": round(dry["per_second"], 1),
                "ratio": 1.0,
            }
        ),
        flush=True,
    )
    real = run_case("send", send_n, args.database_url)
    print(
        json.dumps(
            {
                "name": "send_fake_twilio",
                "n": send_n,
                "seconds": round(real["seconds"], 3),
                "peak_rss_mb": real["peak_rss_mb"],
                "messages_per_second": round(real["per_second"], 1),
                "ratio": round(real["seconds"] / dry["seconds"], 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
