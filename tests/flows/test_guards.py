"""Guards shared with campaigns: the monthly budget, the daily limit, exactly once across repeated and
interrupted runs, the frequency cap with dry-run sends counting."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from portal.models import AuditEntry, Campaign, Customer, FlowEntry, OutboxMessage
from portal.services import settings
from portal.services.flows import guards, runner
from portal.sms import DryRunGateway
from tests.flows.helpers import gateway, options

NOW = datetime(2026, 3, 10, 16, 0, tzinfo=timezone.utc)  # noon in New York


@pytest.fixture()
def store(make_store):
    return make_store("Harbor", timezone="America/New_York")


@pytest.fixture()
def lapsed(db, store):
    """Customers in the High band who last bought 30 days ago: the win-back flow names them all."""

    def make(n, start=0):
        made = []
        for i in range(start, start + n):
            c = Customer(
                external_id=f"H{i:04d}",
                name=f"Hal{i} Doe",
                phone=f"+1202555{2000 + i:04d}",
                store_id=store.id,
                sms_consent="opted_in",
                churn_band="High",
                last_purchase_at=datetime(2026, 2, 8, 12, 0),
            )
            db.session.add(c)
            made.append(c)
        db.session.commit()
        return made

    return make


def win_back(db, store, **kw):
    flows = {f.kind: f for f in runner.ensure_flows(store)}
    flow = flows["win_back"]
    flow.enabled = True
    flow.template = "Back soon? Code {code}"
    for k, v in kw.items():
        setattr(flow, k, v)
    db.session.commit()
    return flow


def test_budget_stops_sends_the_day_it_is_reached_and_resumes_next_month(db, store, lapsed, fake_twilio):
    lapsed(40)
    flow = win_back(db, store, control_share=0.0)
    one = guards.segments_of("Harbor: Back soon? Code ABCDEFGHJK. Reply STOP to opt out")
    assert one == 1
    settings.update({"sms.price_per_segment": "0.01", "sms.monthly_budget": "0.15"})
    runs = runner.run_store(store, now=NOW, gateway=gateway(fake_twilio), opts=options(NOW))
    assert len(fake_twilio.requests) == 15 and runs[0].budget_stopped
    assert runs[0].exclusions["budget"] == 25
    assert guards.paused_stores(NOW)[0]["store"].id == store.id
    # The next day (same month), new customers qualify: still nothing goes out.
    lapsed(5, start=100)
    later = NOW + timedelta(days=1)
    runner.run_store(store, now=later, gateway=gateway(fake_twilio), opts=options(later))
    assert len(fake_twilio.requests) == 15
    # A new month: the budget starts again (15 more), past the 7-day cap of the first ones.
    april = datetime(2026, 4, 2, 16, 0, tzinfo=timezone.utc)
    runner.run_store(store, now=april, gateway=gateway(fake_twilio), opts=options(april))
    assert len(fake_twilio.requests) == 30
    assert guards.paused_stores(april)[0]["at"].month == 4  # reached again in April, after 15 more
    settings.update({"sms.monthly_budget": "0"})  # no budget: everyone left goes
    runner.run_store(store, now=april, gateway=gateway(fake_twilio), opts=options(april))
    assert len(fake_twilio.requests) == 45
    sent_per_phone = Counter(m.to for m in fake_twilio.requests)
    assert max(sent_per_phone.values()) == 1  # each a different customer: the first 15 are in their episode
    assert flow.id and db.session.scalar(select(func.count()).select_from(FlowEntry)) == 45


def test_daily_limit_spreads_entries_over_days(db, store, lapsed, fake_twilio):
    lapsed(12)
    win_back(db, store, control_share=0.0, daily_limit=5)
    for day in range(3):
        now = NOW + timedelta(days=day)
        for _ in range(2):  # a second run the same day shares the day's limit
            runner.run_store(store, now=now, gateway=gateway(fake_twilio), opts=options(now))
        assert len(fake_twilio.requests) == min(5 * (day + 1), 12)


def test_a_run_stopped_after_entering_finishes_sending_next_time_exactly_once(db, store, lapsed, fake_twilio):
    lapsed(20)
    win_back(db, store)
    runner.run_store(store, now=NOW, gateway=gateway(fake_twilio), opts=options(NOW), send=False)  # dies here
    assert fake_twilio.requests == []
    [campaign] = db.session.scalars(select(Campaign)).all()
    assert campaign.flow_id is not None and campaign.status == "draft"
    for _ in range(2):
        runs = runner.run_store(store, now=NOW, gateway=gateway(fake_twilio), opts=options(NOW))
        assert runs[0].entered == 0 and runs[0].exclusions == {"already": 20}
    rows = db.session.scalars(select(OutboxMessage).where(OutboxMessage.group == "message")).all()
    assert Counter(m.to for m in fake_twilio.requests) == Counter(r.phone for r in rows)
    assert all(v == 1 for v in Counter(m.to for m in fake_twilio.requests).values())
    db.session.refresh(campaign)
    assert campaign.status == "done"


def test_control_share_is_random_reproducible_and_near_its_target():
    groups = [runner.group_of(7, cid, "lp:2026-01-01", 0.1) for cid in range(5000)]
    assert groups == [runner.group_of(7, cid, "lp:2026-01-01", 0.1) for cid in range(5000)]
    share = groups.count("control") / len(groups)
    assert 0.085 < share < 0.115


def test_dry_run_sends_count_toward_the_cap_shared_by_flows_and_campaigns(db, store, lapsed):
    from portal.services.campaigns import campaigns
    from portal.services.campaigns.sending import send_campaign

    [c] = lapsed(1)
    campaign = campaigns.create_campaign("Rehearsal", {}, "Hi {first_name}", control_share=0, now=NOW)
    send_campaign(campaign.id, DryRunGateway(), options(NOW))
    db.session.refresh(c)
    assert c.last_sms_at is not None  # the dry run counts like a real send
    win_back(db, store, control_share=0.0)
    later = NOW + timedelta(days=2)
    runs = runner.run_store(store, now=later, gateway=DryRunGateway(), opts=options(later))
    assert runs[0].entered == 0 and runs[0].exclusions == {"frequency_cap": 1}
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "flows.enter")) is None
    assert date(2026, 3, 12) == runner.store_day(store, later)
