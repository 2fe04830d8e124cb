"""Honest results: a planted lift is recovered within the 95 % interval; too little data says why."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone

import pytest
from sqlalchemy import select

from portal.models import Customer, FlowEntry, OutboxMessage, Product, PurchaseLine
from portal.services.flows import runner
from portal.services.flows.results import flow_results
from portal.sms import DryRunGateway
from tests.flows.helpers import options

NOW = datetime(2026, 3, 2, 16, 0, tzinfo=timezone.utc)
DAY = date(2026, 3, 2)
BASE_RATE, LIFT, AMOUNT = 0.20, 0.10, 50.0


@pytest.fixture()
def store(make_store):
    return make_store("Lift", timezone="America/New_York")


def _customers(db, store, n):
    db.session.execute(
        Customer.__table__.insert(),
        [
            {
                "external_id": f"L{i:05d}",
                "name": f"Lee{i} Roe",
                "phone": f"+1202555{i:04d}",
                "store_id": store.id,
                "sms_consent": "opted_in",
                "churn_band": "High",
                "last_purchase_at": datetime(2026, 1, 10, 12, 0),
                "sms_consent_source": "import",
            }
            for i in range(n)
        ],
    )
    db.session.commit()


def _flow(db, store, share):
    flow = {f.kind: f for f in runner.ensure_flows(store)}["win_back"]
    flow.enabled, flow.control_share, flow.daily_limit = True, share, 100_000
    db.session.commit()
    return flow


def test_planted_lift_is_recovered_within_the_95_percent_interval(db, store):
    _customers(db, store, 3000)
    flow = _flow(db, store, 0.2)
    [run] = runner.run_store(store, now=NOW, gateway=DryRunGateway(), opts=options(NOW))
    assert run.entered == 3000 and 500 < run.control < 700
    # The simulated customers buy within 30 days with probability 20 %, 30 % after a message (true lift
    # +10 points, +5.00 revenue per customer); none of them uses the coupon.
    product = Product(external_id="P1", name="Thing")
    db.session.add(product)
    db.session.commit()
    rng = random.Random(2026)
    lines = []
    for cid, group in db.session.execute(select(FlowEntry.customer_id, FlowEntry.group)):
        if rng.random() < BASE_RATE + (LIFT if group == "message" else 0):
            when = datetime.combine(DAY + timedelta(days=rng.randint(1, 30)), time(12))
            lines.append(
                dict(
                    transaction_ref=f"T{cid}",
                    product_id=product.id,
                    line_no=0,
                    customer_id=cid,
                    store_id=store.id,
                    purchased_at=when,
                    quantity=1,
                    unit_price=AMOUNT,
                    amount=AMOUNT,
                )
            )
        if rng.random() < 0.05:  # noise: a purchase outside the window counts for nobody
            lines.append(
                dict(
                    transaction_ref=f"N{cid}",
                    product_id=product.id,
                    line_no=0,
                    customer_id=cid,
                    store_id=store.id,
                    purchased_at=datetime.combine(DAY + timedelta(days=45), time(12)),
                    quantity=1,
                    unit_price=AMOUNT,
                    amount=AMOUNT,
                )
            )
    db.session.execute(PurchaseLine.__table__.insert(), lines)
    db.session.commit()
    # Coupons redeemed by a few: shown, never the measure.
    first = db.session.scalars(select(OutboxMessage).where(OutboxMessage.group == "message").limit(7)).all()
    for row in first:
        row.redeemed_at = NOW + timedelta(days=3)
    db.session.commit()

    results = flow_results(flow, NOW + timedelta(days=40))
    assert results.not_enough is None
    rate, revenue = results.cumulative.rate, results.cumulative.revenue
    assert rate.low <= LIFT <= rate.high and rate.low > 0
    assert revenue.low <= LIFT * AMOUNT <= revenue.high and revenue.low > 0
    assert results.redeemed == 7
    assert results.cumulative.message.n + results.cumulative.control.n == 3000
    assert results.cost > 0 and results.per_cost[1] <= results.per_cost[0] <= results.per_cost[2]
    assert [w.label for w in results.weeks] == ["Week of 2026-03-02"]


def test_not_enough_data_says_why_and_how_many_more(db, store):
    _customers(db, store, 50)
    flow = _flow(db, store, 0.1)
    empty = flow_results(flow, NOW)
    assert "No customer has entered this flow yet" in empty.not_enough and "300 entries" in empty.not_enough
    runner.run_store(store, now=NOW, gateway=DryRunGateway(), opts=options(NOW))
    waiting = flow_results(flow, NOW + timedelta(days=5))
    assert "0 messaged and 0 control customers have a complete 30-day window" in waiting.not_enough
    assert "50 more are still in their window (all of them are measured from 2026-04-02)" in waiting.not_enough
    control = waiting.maturing and sum(1 for g in db.session.scalars(select(FlowEntry.group)) if g == "control")
    needed = -(-(30 - control) // 0.1)
    assert f"about {int(needed)} more customers must enter" in waiting.not_enough
