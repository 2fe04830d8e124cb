"""A 90-day simulated run of every flow over a small store, on a frozen clock, against the recording fake Twilio.

Each customer is built to trigger a known flow on a known day (or never: opted out, Lost, a first
tier fit, a dead-stock item already bought). Every day the store buys, its features are refreshed
(as the nightly rescore would), and the daily run goes twice (cron and the post-rescore job both
fire). The entries must be exactly the designed ones, nobody gets two messages within the cap,
control customers get nothing, and every message reaches Twilio once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta, timezone
from itertools import count

import pytest
from sqlalchemy import select

from portal.models import (
    BundleRule,
    Campaign,
    Customer,
    Flow,
    FlowEntry,
    ModelRecord,
    OutboxMessage,
    Product,
    PurchaseLine,
    TierChange,
)
from portal.services.flows import runner
from tests.flows.helpers import gateway, options

D0 = date(2026, 1, 5)
DAYS = 90
_tx = count(1)


def moment(i: int) -> datetime:
    """10:00 in New York on day i of the simulation."""
    return datetime(2026, 1, 5, 15, 0, tzinfo=timezone.utc) + timedelta(days=i)


@pytest.fixture()
def shop(db, make_store):
    store = make_store("Demo", timezone="America/New_York")
    for ext in ("P1", "P5", "P9"):
        db.session.add(Product(external_id=ext, name={"P9": "Dead Item"}.get(ext, ext)))
    db.session.commit()
    return store


class World:
    def __init__(self, db, store):
        self.db, self.store, self.n = db, store, 0
        self.products = dict(db.session.execute(select(Product.external_id, Product.id)).all())
        self.by_name: dict[str, Customer] = {}

    def customer(self, name: str, consent="opted_in", **kw) -> Customer:
        self.n += 1
        c = Customer(
            external_id=name,
            name=f"{name} Tester",
            phone=f"+1202555{1000 + self.n:04d}",
            store_id=self.store.id,
            sms_consent=consent,
            **kw,
        )
        self.db.session.add(c)
        self.db.session.commit()
        self.by_name[name] = c
        return c

    def buy(self, name: str, day: date, product: str = "P5", amount: float = 20.0) -> None:
        self.db.session.add(
            PurchaseLine(
                transaction_ref=f"T{next(_tx)}",
                product_id=self.products[product],
                line_no=0,
                customer_id=self.by_name[name].id,
                store_id=self.store.id,
                purchased_at=datetime.combine(day, time(12, 0)),
                quantity=1,
                unit_price=amount,
                amount=amount,
            )
        )
        self.db.session.commit()

    def refresh(self) -> None:
        """What the nightly rescore stores for the rules: first/last purchase, frequency, usual gap."""
        lines = defaultdict(list)
        for cid, ref, at in self.db.session.execute(
            select(PurchaseLine.customer_id, PurchaseLine.transaction_ref, PurchaseLine.purchased_at)
        ):
            lines[cid].append((at, ref))
        for c in self.by_name.values():
            got = sorted(lines.get(c.id, []))
            if not got:
                continue
            c.first_purchase_at, c.last_purchase_at = got[0][0], got[-1][0]
            c.frequency = len({ref for _, ref in got})
            c.avg_purchase_gap_days = (got[-1][0] - got[0][0]).days / (c.frequency - 1) if c.frequency > 1 else None
        self.db.session.commit()

    def rescore_tiers(self, at: datetime, moves: list[tuple[str, str | None, str]]) -> None:
        for c in self.by_name.values():
            c.scored_at = at
        for name, old, new in moves:
            c = self.by_name[name]
            c.tier = new
            self.db.session.add(TierChange(customer_id=c.id, at=at, old_tier=old, new_tier=new, reason="rescored"))
        self.db.session.commit()


def build(db, store) -> tuple[World, dict, set]:
    """The designed population; returns it, purchases by day, and the expected (kind, name, day) entries."""
    w = World(db, store)
    plan = defaultdict(list)  # day index -> [(name, product)]
    expected = set()
    before = lambda n: D0 - timedelta(days=n)  # noqa: E731
    # Win-back: usual gap 10 days, k = 2: the run names them once 20 days after their last purchase.
    for j in range(6):
        name = f"W{j}"
        w.customer(name)
        last = 5 + 3 * j
        for back in (last + 20, last + 10, last):
            w.buy(name, before(back))
        expected.add(("win_back", name, 15 - 3 * j))
    w.customer("WHIGH", churn_band="High")  # the High band names them at once
    w.buy("WHIGH", before(40))
    w.buy("WHIGH", before(2))
    expected.add(("win_back", "WHIGH", 0))
    w.customer("WLOST", lifecycle="Lost")  # overdue, but Lost: never
    w.customer("WOPT", consent="opted_out")  # overdue, but opted out: never
    w.customer("WNONE", consent="unknown")  # overdue, no recorded opt-in: never
    for name in ("WLOST", "WOPT", "WNONE"):
        for back in (60, 50, 40):
            w.buy(name, before(back))
    # Buys again after the message: a new episode, named again only past the 60-day cooldown.
    w.customer("WRE")
    for back in (40, 30, 20):
        w.buy("WRE", before(back))
    plan[30].append(("WRE", "P5"))
    expected |= {("win_back", "WRE", 0), ("win_back", "WRE", 77)}  # new gap 70/3 days: 47 idle days after day 30
    # Second purchase (21 days after the first, 14 more days of grace): once each.
    for j in range(4):
        w.customer(f"S{j}")
        plan[2 * j].append((f"S{j}", "P5"))
        expected.add(("second_purchase", f"S{j}", 2 * j + 21))
    w.customer("S5")  # comes back on day 10: no second-purchase message, but a win-back 20 days later
    plan[0].append(("S5", "P5"))
    plan[10].append(("S5", "P5"))
    expected.add(("win_back", "S5", 30))
    # Birthdays on days 40 and 70, and 29 February on 28 February (day 54) in 2026.
    for name, day in (("B1", 40), ("B2", 70)):
        d = D0 + timedelta(days=day)
        w.customer(name, birthday=date(1990, d.month, d.day))
        expected.add(("birthday", name, day))
    w.customer("B3", birthday=date(1992, 2, 29))
    expected.add(("birthday", "B3", 54))
    # Near the next tier: the Gold floor is G1's 1000; N1 is 20 short, N2 500.
    w.customer("G1", tier="Gold", monetary=1000)
    w.customer("N1", tier="Silver", monetary=980)
    w.customer("N2", tier="Silver", monetary=500)
    expected.add(("near_tier", "N1", 0))
    # Tier moves at a rescore on day 35: up (welcome), a first fit (not a move up), down (nothing).
    w.customer("T1", tier="Silver", monetary=2000)
    w.customer("T2", tier=None, monetary=300)
    w.customer("T3", tier="Gold", monetary=1500)
    expected.add(("tier_up", "T1", 35))
    # Bundle: the dead-stock item P9 goes with P1. U1 buys P1 on day 20; U2 had bought P9 already.
    for name in ("U1", "U2"):
        w.customer(name)
        w.buy(name, before(100), "P9" if name == "U2" else "P5")
        w.buy(name, before(50))
    plan[20].append(("U1", "P1"))
    plan[25].append(("U2", "P1"))
    expected.add(("bundle", "U1", 21))
    # Two flows the same day (win-back and birthday on day 15): one message, the first flow's.
    w.customer("X1", birthday=date(1985, (D0 + timedelta(days=15)).month, (D0 + timedelta(days=15)).day))
    for back in (25, 15, 5):
        w.buy("X1", before(back))
    expected.add(("win_back", "X1", 15))
    record = ModelRecord(name="bundles", files={}, manifest={}, active=True)
    db.session.add(record)
    db.session.flush()
    db.session.add(
        BundleRule(
            model_id=record.id,
            antecedents=["P1"],
            consequents=["P9"],
            antecedent_names="P1",
            consequent_names="Dead Item",
            support=0.1,
            confidence=0.3,
            lift=1.5,
            baskets=10,
        )
    )
    db.session.commit()
    return w, plan, expected


def switch_on(db, store) -> dict[str, Flow]:
    flows = {f.kind: f for f in runner.ensure_flows(store)}
    for f in flows.values():
        f.enabled = True
    db.session.commit()
    return flows


def test_ninety_days_each_flow_names_exactly_its_customers(db, shop, fake_twilio):
    w, plan, expected = build(db, shop)
    switch_on(db, shop)
    gw = gateway(fake_twilio)
    for i in range(DAYS):
        for name, product in plan.get(i, []):
            w.buy(name, D0 + timedelta(days=i), product)
        w.refresh()
        if i == 35:
            w.rescore_tiers(
                moment(i) - timedelta(hours=2),
                [("T1", "Silver", "Gold"), ("T2", None, "Bronze"), ("T3", "Gold", "Silver")],
            )
        for _ in range(2):  # cron and the post-rescore job: the second run adds nobody
            runner.run_store(shop, now=moment(i), gateway=gw, opts=options(moment(i)))

    db.session.expire_all()
    names = {c.id: c.external_id for c in w.by_name.values()}
    entries = db.session.execute(
        select(Flow.kind, FlowEntry.customer_id, FlowEntry.entered_on, FlowEntry.group).join(
            Flow, Flow.id == FlowEntry.flow_id
        )
    ).all()
    got = {(kind, names[cid], (on - D0).days) for kind, cid, on, _g in entries}
    assert got == expected

    rows = db.session.scalars(select(OutboxMessage).join(Campaign).where(Campaign.flow_id.isnot(None))).all()
    sent = [r for r in rows if r.group == "message"]
    assert {r.status for r in sent} == {"sent"}
    # Every message reached Twilio exactly once, and nothing else did (control rows carry no body).
    assert Counter(m.body for m in fake_twilio.requests) == Counter(r.body for r in sent)
    controls = [r for r in rows if r.group == "control"]
    assert controls and len(controls) < len(sent)  # the 10 % control share held some out
    assert all(r.status == "control" and r.body is None and r.message_sid is None for r in controls)
    control_groups = {(kind, cid) for kind, cid, _on, g in entries if g == "control"}
    assert len(control_groups) == len(controls)
    # Nobody got two messages within the 7-day frequency cap.
    per_phone = defaultdict(list)
    for r in sent:
        per_phone[r.phone].append(r.sent_at)
    for times in per_phone.values():
        times.sort()
        assert all(b - a >= timedelta(days=7) for a, b in zip(times, times[1:]))
    # Opted-out, unconsented and Lost customers were never touched.
    untouched = {w.by_name[n].phone for n in ("WLOST", "WOPT", "WNONE")}
    assert not untouched & {m.to for m in fake_twilio.requests}
    # The bundle offer names the dead-stock item.
    [bundle_row] = [r for r in rows if r.customer_id == w.by_name["U1"].id]
    assert bundle_row.group == "control" or "Dead Item" in bundle_row.body
