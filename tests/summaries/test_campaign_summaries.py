"""A campaign's stored numbers equal the ones computed from scratch after every kind of change.

After a send (dry run, and through the recording fake Twilio), delivery callbacks, a redemption, an
import of purchases by recipients, its undo, an opt-out and an erasure, the stored row (refreshed by
the change itself: jobs run inline in tests) read back through ``summaries.read`` gives the same
Results, list row and dashboard counts as the functions that aggregate the outbox and purchase lines
(``results.campaign_results``, ``overview.campaign_numbers``); one case also against a plain query
written here. And: time passing needs no refresh, the pages read the stored row and say "as of".
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select

from portal.models import (
    Campaign,
    CampaignSummary,
    ConsentEvent,
    Customer,
    ImportRun,
    Job,
    OutboxMessage,
    Product,
    PurchaseLine,
    Store,
)
from portal.services import settings
from portal.services.campaigns import campaigns, overview, redemption
from portal.services.campaigns import results as cr
from portal.services.campaigns.sending import SendOptions, send_campaign
from portal.services.customers import customers as customer_service
from portal.services.customers import privacy
from portal.services.importer import history, runs
from portal.services.summaries import campaigns as summaries
from portal.sms import DryRunGateway, TwilioGateway, compute_signature

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sms"))
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio  # noqa: E402

PUBLIC = "https://loyalist.example.com"
NEW_YORK = ZoneInfo("America/New_York")
# The first message went out twelve days ago (whole seconds): purchases since then are in its window.
T0 = (datetime.now(timezone.utc) - timedelta(days=12)).replace(microsecond=0)
FAST = dict(quiet_start="00:00", quiet_end="00:00", rate_per_second=1000, lookup_delay_seconds=0)


@pytest.fixture(autouse=True)
def twilio_token(app):
    saved = app.config.get("TWILIO_AUTH_TOKEN"), app.config.get("PUBLIC_BASE_URL")
    app.config["TWILIO_AUTH_TOKEN"], app.config["PUBLIC_BASE_URL"] = AUTH_TOKEN, PUBLIC
    yield
    app.config["TWILIO_AUTH_TOKEN"], app.config["PUBLIC_BASE_URL"] = saved


@pytest.fixture()
def world(db, make_store, make_customer):
    """Two stores (New York, London) and 80 opted-in customers, and a campaign to all of them split 50/50."""
    ny = make_store("Corner Shop", timezone="America/New_York")
    london = make_store("Uptown", timezone="Europe/London", currency="GBP")
    for i in range(80):
        make_customer(
            ny if i % 4 else london,
            name=f"P{i} X",
            phone=f"+1202555{i:04d}",
            sms_consent="opted_in",
            sms_consent_at=T0 - timedelta(days=90),
        )
    campaign = campaigns.create_campaign("Spring", {}, "Hi {first_name} {code}", control_share=0.5, now=T0)
    return ny, london, campaign


def _send_dry(campaign_id: int) -> None:
    send_campaign(campaign_id, DryRunGateway(), SendOptions(now=lambda: T0, **FAST))


def _rows(db, campaign_id: int, group: str) -> list[OutboxMessage]:
    query = select(OutboxMessage).where(OutboxMessage.campaign_id == campaign_id, OutboxMessage.group == group)
    return db.session.scalars(query.order_by(OutboxMessage.id)).all()


def customer_zone(db, row: OutboxMessage) -> str:
    customer = db.session.get(Customer, row.customer_id)
    return db.session.get(Store, customer.store_id).timezone


def _plain(value):
    return dataclasses.asdict(value) if value is not None else None


def assert_same(db, campaign_id: int, now: datetime | None = None) -> CampaignSummary:
    """The stored row (as the change left it: no refresh on this read) equals the from-scratch numbers."""
    now = now or datetime.now(timezone.utc)
    db.session.expire_all()
    row = db.session.get(CampaignSummary, campaign_id)
    assert row is not None and row.changed_at is None, "the change did not refresh the stored numbers"
    computed_at = row.computed_at
    campaign = db.session.get(Campaign, campaign_id)
    stored = summaries.read(campaign, now)
    assert _plain(stored.results(now)) == _plain(cr.campaign_results(campaign, now))
    numbers, as_of = summaries.numbers([campaign], now)
    assert _plain(numbers[campaign_id]) == _plain(overview.campaign_numbers([campaign], now)[campaign_id])
    assert stored.counts == campaigns.status_counts(campaign_id)
    db.session.expire_all()
    assert db.session.get(CampaignSummary, campaign_id).computed_at == computed_at  # read, not recomputed
    assert as_of is not None and as_of.replace(tzinfo=None) == computed_at.replace(tzinfo=None)
    return row


def plain_reference(db, campaign_id: int, now: datetime) -> dict:
    """Delivery counts and per-group purchases straight from the rows, in Python (no shared code)."""
    outbox = db.session.scalars(select(OutboxMessage).where(OutboxMessage.campaign_id == campaign_id)).all()
    sent = [r.sent_at.replace(tzinfo=timezone.utc) for r in outbox if r.sent_at is not None]
    start = min(sent)
    end = min(start + timedelta(days=30), now)
    messaged = [r for r in outbox if r.group == "message"]
    group_of = {r.customer_id: r.group for r in outbox}
    zones = {s.id: ZoneInfo(s.timezone) for s in db.session.scalars(select(Store))}
    per_customer: dict[int, float] = {}
    for line in db.session.scalars(select(PurchaseLine)):
        if line.customer_id not in group_of:
            continue
        at = line.purchased_at.replace(tzinfo=zones[line.store_id])
        if start <= at < end:
            per_customer.setdefault(line.customer_id, 0.0)
            per_customer[line.customer_id] += float(line.amount)
    opted = {
        e.customer_id
        for e in db.session.scalars(select(ConsentEvent).where(ConsentEvent.status == "opted_out"))
        if e.effective_at.replace(tzinfo=timezone.utc) >= start and group_of.get(e.customer_id) == "message"
    }
    return {
        "messages": len(messaged),
        "sent": sum(r.status in ("sent", "delivered", "undelivered", "dry-run") for r in messaged),
        "delivered": sum(r.status == "delivered" for r in messaged),
        "failed": sum(r.status in ("failed", "undelivered") for r in messaged),
        "opted_out": len(opted),
        "redeemed": sum(r.redeemed_at is not None for r in outbox),
        "revenue": {g: sum(a for c, a in per_customer.items() if group_of[c] == g) for g in ("message", "control")},
    }


# --- sends ---------------------------------------------------------------------------------------


def test_a_dry_run_send_stores_the_numbers_it_leaves(db, world):
    _ny, _london, campaign = world
    assert db.session.get(CampaignSummary, campaign.id) is None
    _send_dry(campaign.id)
    row = assert_same(db, campaign.id)
    stored = row.data["results"]["delivery"]
    assert stored["sent"] == stored["messages"] == 40 and row.data["list"]["counts"]["dry-run"] == 40


def test_a_twilio_send_and_its_delivery_callbacks(client, db, world):
    _ny, _london, campaign = world
    with FakeTwilio(auth_token=AUTH_TOKEN) as fake:
        gateway = TwilioGateway(ACCOUNT_SID, AUTH_TOKEN, from_number="+15005550006", api_base=fake.base_url)
        send_campaign(campaign.id, gateway, SendOptions(now=lambda: T0, **FAST), callback_url=PUBLIC + "/sms/status")
    assert_same(db, campaign.id)
    messaged = _rows(db, campaign.id, "message")
    assert {r.status for r in messaged} == {"sent"}
    callbacks = [(messaged[i].message_sid, "delivered", None) for i in range(5)]
    callbacks += [(messaged[5].message_sid, "undelivered", "30003"), (messaged[6].message_sid, "failed", "21610")]
    for sid, status, code in callbacks:
        params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": ACCOUNT_SID}
        if code:
            params["ErrorCode"] = code
        signature = compute_signature(AUTH_TOKEN, PUBLIC + "/sms/status", params)
        response = client.post("/sms/status", data=params, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 204
    row = assert_same(db, campaign.id)
    delivery = row.data["results"]["delivery"]
    # 21610 fails the message and opts the customer out: both show.
    assert (delivery["delivered"], delivery["failed"], delivery["opted_out"]) == (5, 2, 1)


# --- redemptions, purchases, opt-outs, erasure -------------------------------------------------------


def test_a_redemption(db, world):
    _ny, _london, campaign = world
    _send_dry(campaign.id)
    summaries.read(db.session.get(Campaign, campaign.id))
    row = _rows(db, campaign.id, "message")[3]
    customer = db.session.get(Customer, row.customer_id)
    redemption.redeem_by_staff(row.coupon_code, customer, "staff@example.com", now=T0 + timedelta(days=2))
    stored = assert_same(db, campaign.id)
    assert stored.data["results"]["delivery"]["redeemed"] == 1 == stored.data["list"]["redeemed"]


HEADER = "customer_id,transaction_id,purchase_date,product_id,product_name,quantity,price_per_unit,total_amount,store\n"


def _import(app, store, text: str) -> ImportRun:
    path = os.path.join(app.config["UPLOAD_DIR"], f"{datetime.now().timestamp()}-lines.csv")
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)
    run, _ = runs.create_run(
        "transactions", path, "lines.csv", store=store, user_email="test", source="cli", stale_ok=True
    )
    return runs.execute(run.id)


def _purchases_by_recipients(db, campaign_id: int) -> str:
    """Lines for 12 messaged and 6 control customers inside the window, a return, and one before it."""
    first_day = T0.astimezone(NEW_YORK) + timedelta(days=1)
    lines = []
    for group, count, amount in (("message", 12, 30), ("control", 6, 25)):
        for i, row in enumerate(_rows(db, campaign_id, group)[:count]):
            customer = db.session.get(Customer, row.customer_id)
            store = customer.store.name
            when = (first_day + timedelta(hours=5 * i)).strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"{customer.external_id},T{group}{i},{when},P1,Mug,1,{amount}.00,{amount}.00,{store}\n")
    messaged = db.session.get(Customer, _rows(db, campaign_id, "message")[0].customer_id)
    when = (first_day + timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S")
    lines.append(f"{messaged.external_id},TR,{when},P1,Mug,-1,10.00,-10.00,{messaged.store.name}\n")
    before = (T0.astimezone(NEW_YORK) - timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S")
    lines.append(f"{messaged.external_id},TB,{before},P1,Mug,1,70.00,70.00,{messaged.store.name}\n")
    return HEADER + "".join(lines)


def test_an_import_of_purchases_by_recipients_and_its_undo(app, db, world):
    ny, _london, campaign = world
    _send_dry(campaign.id)
    summaries.read(db.session.get(Campaign, campaign.id))
    run = _import(app, ny, _purchases_by_recipients(db, campaign.id))
    assert run.status == "done", run.message
    now = datetime.now(timezone.utc)
    row = assert_same(db, campaign.id, now)
    groups = row.data["results"]["groups"]
    assert (groups["message"]["buyers"], groups["control"]["buyers"]) == (12, 6)
    # And against a plain query written here: the window, the zones, returns netting out.
    plain = plain_reference(db, campaign.id, now)
    results = summaries.read(db.session.get(Campaign, campaign.id), now).results(now)
    assert math.isclose(results.message.revenue, plain["revenue"]["message"]) and plain["revenue"]["message"] == 350
    assert math.isclose(results.control.revenue, plain["revenue"]["control"]) and plain["revenue"]["control"] == 150
    assert {k: results.delivery[k] for k in ("messages", "sent", "delivered", "failed", "opted_out", "redeemed")} == {
        k: plain[k] for k in ("messages", "sent", "delivered", "failed", "opted_out", "redeemed")
    }

    history.undo(db.session.get(ImportRun, run.id), "test")
    row = assert_same(db, campaign.id)
    assert row.data["results"]["groups"]["message"]["buyers"] == 0


def test_an_opt_out_on_the_customer_page_and_by_stop(client, db, world):
    _ny, _london, campaign = world
    _send_dry(campaign.id)
    summaries.read(db.session.get(Campaign, campaign.id))
    first, second = _rows(db, campaign.id, "message")[:2]
    customer_service.record_consent(db.session.get(Customer, first.customer_id), "opted_out", "staff", None, "x@y.z")
    assert assert_same(db, campaign.id).data["results"]["delivery"]["opted_out"] == 1
    phone = db.session.get(Customer, second.customer_id).phone
    params = {"MessageSid": "SM" + "7" * 32, "From": phone, "Body": "STOP", "AccountSid": ACCOUNT_SID}
    signature = compute_signature(AUTH_TOKEN, PUBLIC + "/sms/inbound", params)
    assert client.post("/sms/inbound", data=params, headers={"X-Twilio-Signature": signature}).status_code == 200
    stored = assert_same(db, campaign.id)
    plain = plain_reference(db, campaign.id, datetime.now(timezone.utc))
    assert stored.data["results"]["delivery"]["opted_out"] == 2 == plain["opted_out"]


def test_an_erasure_of_a_recipient(db, world):
    _ny, _london, campaign = world
    _send_dry(campaign.id)
    draft = campaigns.create_campaign("Later", {}, "Hello again {code}", control_share=0.2)
    for c in (campaign, draft):
        summaries.read(db.session.get(Campaign, c.id))
    pending = _rows(db, draft.id, "message")[0]
    privacy.erase_customer(db.session.get(Customer, pending.customer_id), "admin@example.com")
    for c in (campaign, draft):
        assert_same(db, c.id)
    assert db.session.get(CampaignSummary, draft.id).data["list"]["counts"]["cancelled"] == 1


def test_a_cancelled_draft(db, world):
    _ny, _london, campaign = world
    summaries.read(db.session.get(Campaign, campaign.id))
    campaigns.cancel_campaign(campaign.id, "admin@example.com")
    assert assert_same(db, campaign.id).data["list"]["counts"] == {"cancelled": 40, "control": 40}


# --- time passing -------------------------------------------------------------------------------------


def test_time_passing_needs_no_refresh(db, world):
    _ny, _london, campaign = world
    _send_dry(campaign.id)
    for later in (timedelta(0), timedelta(days=5), timedelta(days=19), timedelta(days=40)):
        assert_same(db, campaign.id, datetime.now(timezone.utc) + later)  # day 12 of 30, 17, after the window
    stored = summaries.read(db.session.get(Campaign, campaign.id))
    early, done = stored.results(T0 + timedelta(days=12)), stored.results(T0 + timedelta(days=31))
    assert not early.complete and early.days_elapsed == 12 and early.expected.startswith("Import the sales made since")
    assert done.complete and done.days_elapsed == 30 and done.expected.startswith("Import the sales up to")


def test_a_line_dated_ahead_counts_once_its_time_comes(db, world):
    """A purchase already on file for later today enters the window when its time comes: measured again then."""
    _ny, _london, campaign = world
    _send_dry(campaign.id)
    row = _rows(db, campaign.id, "message")[0]
    now = datetime.now(timezone.utc).replace(microsecond=0)
    ahead = (now + timedelta(hours=3)).astimezone(ZoneInfo(customer_zone(db, row))).replace(tzinfo=None)
    customer = db.session.get(Customer, row.customer_id)
    product = Product(external_id="P-AHEAD", name="Mug")
    db.session.add(product)
    db.session.flush()
    db.session.add(
        PurchaseLine(
            transaction_ref="AHEAD",
            product_id=product.id,
            line_no=0,
            customer_id=row.customer_id,
            store_id=customer.store_id,
            purchased_at=ahead,
            quantity=1,
            unit_price=40,
            amount=40,
        )
    )
    db.session.commit()
    summaries.refresh([campaign.id], now)
    stored = db.session.get(CampaignSummary, campaign.id)
    assert stored.data["results"]["groups"]["message"]["buyers"] == 0 and stored.data["results"]["valid_until"]
    later = now + timedelta(hours=4)
    results = summaries.read(db.session.get(Campaign, campaign.id), later).results(later)
    assert results.message.buyers == 1
    assert _plain(results) == _plain(cr.campaign_results(db.session.get(Campaign, campaign.id), later))


def test_a_changed_result_window_setting_is_measured_again(db, world):
    _ny, _london, campaign = world
    _send_dry(campaign.id)
    assert db.session.get(CampaignSummary, campaign.id).data["days"] == 30
    settings.update({"sms.result_days": 7}, "admin@example.com")
    now = datetime.now(timezone.utc)
    campaign = db.session.get(Campaign, campaign.id)
    results = summaries.read(campaign, now).results(now)
    assert results.days == 7 and results.complete  # 12 days after the first message
    assert _plain(results) == _plain(cr.campaign_results(campaign, now))
    assert db.session.get(CampaignSummary, campaign.id).data["days"] == 7


# --- coalescing, and the pages ------------------------------------------------------------------------


def test_a_burst_of_changes_queues_one_refresh(db, world, monkeypatch):
    _ny, _london, campaign = world
    _send_dry(campaign.id)
    asked = []
    monkeypatch.setattr(
        summaries.jobs,
        "enqueue",
        lambda name, title, **kw: (
            asked.append(name)
            or db.session.add(Job(id=f"j{len(asked)}", func=name, title=title, status="queued"))
            or db.session.commit()
        ),
    )
    for row in _rows(db, campaign.id, "message")[:5]:
        summaries.changed([campaign.id], [row.customer_id])
    assert asked == [summaries.JOB]
    assert db.session.get(CampaignSummary, campaign.id).changed_at is not None
    # Callbacks and opt-outs touch no purchase line: only the outbox parts are measured again.
    measure = summaries.compute
    monkeypatch.setattr(summaries, "compute", lambda *a, **k: pytest.fail("the purchases were measured again"))
    assert summaries.refresh_job() == {"message": "Numbers refreshed for 1 campaign."}
    assert db.session.get(CampaignSummary, campaign.id).changed_at is None
    monkeypatch.setattr(summaries, "compute", measure)
    assert_same(db, campaign.id)


def _statements(db):
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()).lower())

    event.listen(db.engine, "before_cursor_execute", record)
    return seen, lambda: event.remove(db.engine, "before_cursor_execute", record)


@pytest.mark.parametrize("path", ["/campaigns/{id}", "/campaigns", "/"])
def test_the_pages_read_the_stored_row_and_say_as_of(client, db, world, login_as, path):
    _ny, _london, campaign = world
    _send_dry(campaign.id)
    login_as("admin")
    url = path.format(id=campaign.id)
    client.get(url)  # the first view after a change may measure; this one must not
    seen, stop = _statements(db)
    try:
        page = client.get(url).get_data(as_text=True)
    finally:
        stop()
    outbox_aggregates = [s for s in seen if "from outbox" in s and ("group by" in s or "count(" in s)]
    assert outbox_aggregates == []
    if path != "/":  # the dashboard's other numbers have their own stored rows (and tests)
        assert [s for s in seen if "purchase_lines" in s] == []
    assert "as of" in page and ("numbers-as-of" in page or "campaign-as-of" in page)
