"""What outgoing webhooks add to a full rescore that moves many customers.

    python -m bench.webhooks            # 100,000 customers, ~500,000 lines (SQLite file in a temp folder)
    python -m bench.webhooks --quick    # 20,000 customers
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench python -m bench.webhooks   # on PostgreSQL

Builds the store of ``bench.api`` (every model trained), then times ``scoring.rescore_all`` while the
tier retention period flips between 12 and 4 months, so each rescore moves ~23 % of the tiers: with
no active webhook endpoint (the rescore reads nothing more), and with one subscribed to every
event (old bands and lifecycles read, every move turned into an event, grouped deliveries recorded
and queued), the two cases interleaved so the machine's load hits both alike. Deliveries go to a local
receiver on the background job thread. Prints one JSON line per rescore: case, customers, seconds (the
whole rescore), store_seconds (``score_store.store``: the writes, and the transitions when subscribed),
notify_seconds (``notify_rescore``: recording and queueing the grouped deliveries), tier moves, deliveries.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from bench.api import _app, _url, build

BARS = ({"tiers.retention_months": "12"}, {"tiers.retention_months": "4"})  # each flip moves ~23 % of tiers


class _Quiet(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 customers instead of 100,000")
    parser.add_argument("--rounds", type=int, default=2, help="rescores per case")
    args = parser.parse_args()
    n = 20_000 if args.quick else 100_000
    server = HTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
        url = _url(os.environ.get("DATABASE_URL") or f"sqlite:///{tmp}/bench.db")
        models_dir = os.path.join(tmp, "Models")
        os.makedirs(models_dir)
        app = _app(url, models_dir)
        app.config["JOBS_INLINE"] = False  # deliveries on the job thread, as deployed; the rescore only queues them
        with app.app_context():
            from sqlalchemy import func, select

            from portal.extensions import db
            from portal.models import TierChange, User, WebhookDelivery
            from portal.services import settings as settings_service
            from portal.services import webhooks_out
            from portal.services.scores import scoring, training
            from portal.services.scores import store as score_store

            db.drop_all()
            db.create_all()
            build(n)
            settings_service.update(BARS[0])
            training.train_all()
            scoring.rescore_all()
            admin = User(email="bench@example.com", role="admin")
            admin.set_password("bench-password-123")
            db.session.add(admin)
            db.session.commit()
            target = f"http://127.0.0.1:{server.server_port}/hook"
            endpoint, _secret = webhooks_out.create(target, list(webhooks_out.EVENTS), "bench", admin)
            timed = {"store": 0.0, "notify": 0.0}
            real_store, real_notify = score_store.store, webhooks_out.notify_rescore

            def store(*a, **kw):
                started = time.perf_counter()
                try:
                    return real_store(*a, **kw)
                finally:
                    timed["store"] += time.perf_counter() - started

            def notify_rescore(*a, **kw):
                started = time.perf_counter()
                try:
                    return real_notify(*a, **kw)
                finally:
                    timed["notify"] += time.perf_counter() - started

            score_store.store, webhooks_out.notify_rescore = store, notify_rescore
            flip = 1
            for _ in range(args.rounds):
                for case in ("no_endpoint", "subscribed"):  # interleaved: the machine's load hits both alike
                    endpoint.active = case == "subscribed"
                    settings_service.update(BARS[flip])
                    flip = 1 - flip
                    moves_before = db.session.scalar(select(func.count(TierChange.id)))
                    deliveries_before = db.session.scalar(select(func.count(WebhookDelivery.id)))
                    db.session.commit()
                    timed.update(store=0.0, notify=0.0)
                    started = time.perf_counter()
                    counts = scoring.rescore_all(reason="bench")
                    seconds = time.perf_counter() - started
                    moves = db.session.scalar(select(func.count(TierChange.id))) - moves_before
                    deliveries = db.session.scalar(select(func.count(WebhookDelivery.id))) - deliveries_before
                    db.session.commit()
                    print(
                        json.dumps(
                            {
                                "name": "webhooks.full_rescore",
                                "case": case,
                                "database": db.engine.dialect.name,
                                "customers": n,
                                "scored": counts["scored"],
                                "seconds": round(seconds, 2),
                                "store_seconds": round(timed["store"], 2),
                                "notify_seconds": round(timed["notify"], 2),
                                "tier_moves": moves,
                                "deliveries": deliveries,
                            }
                        ),
                        flush=True,
                    )
            time.sleep(2)  # let the job thread finish its deliveries before the folder goes
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
