"""Sending against the recording fake Twilio (and Prism for the contract): retries, doubt, errors,
consent at send time, quiet hours with a frozen clock, rate limit, cancel."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN
from sqlalchemy import select

from portal.models import Campaign, ConsentEvent, Customer, OutboxMessage
from portal.services.campaigns import campaigns, quiet_hours, resuming, send_run
from portal.services.campaigns.sending import SendOptions, send_campaign
from portal.sms import DryRunGateway, TwilioGateway

FROM = "+15005550006"
CALLBACK = "https://portal.example.com/sms/status"
QUIET = {"quiet_start": "21:00", "quiet_end": "08:00"}
NOON_NY = datetime(2026, 3, 10, 16, 0, tzinfo=timezone.utc)  # 12:00 in New York (EDT)


@pytest.fixture()
def store(make_store):
    return make_store("Corner Shop", sender_name="CornerShop", timezone="America/New_York")


@pytest.fixture()
def people(make_customer, store):
    def make(n, store_=None, **kw):
        return [
            make_customer(
                store_ or store,
                name=f"P{i} X",
                sms_consent="opted_in",
                sms_consent_at=NOON_NY - timedelta(days=90),
                **kw,
            )
            for i in range(n)
        ]

    return make


def gateway(base_url, timeout=5):
    return TwilioGateway(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM, api_base=base_url, timeout=timeout)


def fast(**kw):
    """Options for tests: no real waiting beyond a few milliseconds."""
    values = dict(
        quiet_start="00:00",
        quiet_end="00:00",  # no quiet hours unless a test sets them
        rate_per_second=1000,
        lease_seconds=30,
        lookup_delay_seconds=0,
        backoff_base_seconds=0.01,
        backoff_max_seconds=0.05,
        max_wait_seconds=5,
    )
    values.update(kw)
    return SendOptions(**values)


def outbox(db, campaign_id):
    db.session.expire_all()
    return db.session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.campaign_id == campaign_id, OutboxMessage.group == "message")
        .order_by(OutboxMessage.id)
    ).all()


def assert_exactly_once(fake, rows):
    """Every recipient got one message at Twilio, and its row holds that message's SID."""
    per_phone = Counter(m["to"] for m in fake.messages)
    assert {r.phone: per_phone[r.phone] for r in rows} == {r.phone: 1 for r in rows}
    sids = {m["to"]: m["sid"] for m in fake.messages}
    assert {r.phone: r.message_sid for r in rows} == sids
    assert all(r.status == "sent" for r in rows)


def test_campaign_sends_each_recipient_once_with_the_status_callback(db, people, fake_twilio):
    people(5)
    campaign = campaigns.create_campaign("Hello", {}, "Hi {first_name} {code}", control_share=0.2)
    summary = send_campaign(campaign.id, gateway(fake_twilio.base_url), fast(), callback_url=CALLBACK)
    rows = outbox(db, campaign.id)
    assert len(rows) == 4 and "4 sent" in summary["message"]
    assert_exactly_once(fake_twilio, rows)
    assert {r.body for r in rows} == {r.body for r in fake_twilio.requests}
    assert {r.status_callback for r in fake_twilio.requests} == {CALLBACK}
    assert db.session.get(Campaign, campaign.id).status == "done"
    assert all(db.session.get(Customer, r.customer_id).last_sms_at is not None for r in rows)


def test_retries_through_429_and_500_bursts_send_exactly_once(db, people, fake_twilio):
    people(6)
    campaign = campaigns.create_campaign("Bursty", {}, "Hi {code}", control_share=0)
    fake_twilio.fail_next(3, status=429)
    fake_twilio.fail_next(2, status=500)
    fake_twilio.fail_next(2, status=503)
    send_campaign(campaign.id, gateway(fake_twilio.base_url), fast())
    rows = outbox(db, campaign.id)
    assert_exactly_once(fake_twilio, rows)
    assert len(fake_twilio.requests) == 6 + 7 and sum(r.attempts for r in rows) == 13


def test_lost_answers_are_looked_up_not_resent(db, people, fake_twilio):
    """A dropped connection and a read timeout after Twilio created the message: in doubt, found."""
    people(4)
    campaign = campaigns.create_campaign("Doubt", {}, "Hi {code}", control_share=0)
    fake_twilio.drop_next(1)
    fake_twilio.delay_next(1, seconds=3)
    send_campaign(campaign.id, gateway(fake_twilio.base_url, timeout=1), fast())
    rows = outbox(db, campaign.id)
    assert_exactly_once(fake_twilio, rows)
    assert len(fake_twilio.requests) == 4  # the two in doubt were found by the lookup, never resent


def test_twilio_unreachable_pauses_the_campaign_and_loses_nothing(db, people, fake_twilio):
    """Connection refused for every send: no message fails, the campaign waits, then sends each once."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nobody listens there once closed
    people(3)
    campaign = campaigns.create_campaign("Outage", {}, "Hi {code}", control_share=0)
    summary = send_campaign(campaign.id, gateway(dead), fast(max_attempts=4, outage_pause_seconds=600))
    assert summary["message"].startswith("Twilio could not be reached: 4 sends in a row could not connect")
    assert "Nothing was lost; paused until" in summary["message"]
    rows = outbox(db, campaign.id)
    assert [(r.status, r.attempts) for r in rows] == [("pending", 0)] * 3
    campaign_row = db.session.get(Campaign, campaign.id)
    assert campaign_row.status == "waiting" and campaign_row.scheduled_for is not None
    # Twilio is back: the resumed run sends each message exactly once.
    send_campaign(campaign.id, gateway(fake_twilio.base_url), fast())
    assert_exactly_once(fake_twilio, outbox(db, campaign.id))


def test_permanent_errors_are_kept_per_recipient_and_21610_records_an_opt_out(db, people, fake_twilio):
    ok, invalid, unsubscribed = people(3)
    fake_twilio.fail_number(invalid.phone, status=400, code=21211)
    fake_twilio.fail_number(unsubscribed.phone, status=400, code=21610)
    campaign = campaigns.create_campaign("Errors", {}, "Hi {code}", control_share=0)
    send_campaign(campaign.id, gateway(fake_twilio.base_url), fast())
    by_customer = {r.customer_id: r for r in outbox(db, campaign.id)}
    assert by_customer[ok.id].status == "sent"
    assert (by_customer[invalid.id].status, by_customer[invalid.id].error_code) == ("failed", 21211)
    assert (by_customer[unsubscribed.id].status, by_customer[unsubscribed.id].error_code) == ("failed", 21610)
    assert len(fake_twilio.requests) == 3  # permanent errors are not retried
    assert db.session.get(Customer, unsubscribed.id).sms_consent == "opted_out"
    event = db.session.scalar(select(ConsentEvent).where(ConsentEvent.customer_id == unsubscribed.id))
    assert (event.status, event.source) == ("opted_out", "twilio_21610")


def test_account_error_stops_the_campaign_and_keeps_rows_unsent(db, people, fake_twilio):
    people(3)
    campaign = campaigns.create_campaign("Bad creds", {}, "Hi {code}", control_share=0)
    wrong = TwilioGateway(ACCOUNT_SID, "wrong-token", from_number=FROM, api_base=fake_twilio.base_url)
    with pytest.raises(send_run.CampaignStopped, match="account or sender"):
        send_campaign(campaign.id, wrong, fast())
    assert len(fake_twilio.requests) == 1
    assert {r.status for r in outbox(db, campaign.id)} == {"pending"}
    assert db.session.get(Campaign, campaign.id).status == "stopped"
    # Fixed credentials: the same campaign resumes and sends everything once.
    send_campaign(campaign.id, gateway(fake_twilio.base_url), fast())
    assert_exactly_once(fake_twilio, outbox(db, campaign.id))


def test_opt_out_after_creation_wins_and_frequency_cap_is_rechecked(db, people, fake_twilio):
    stays, leaves, busy = people(3)
    campaign = campaigns.create_campaign("Later", {}, "Hi {code}", control_share=0, now=NOON_NY)
    from portal.services.customers.customers import set_consent

    set_consent(db.session.get(Customer, leaves.id), "opted_out", "staff")
    db.session.get(Customer, busy.id).last_sms_at = NOON_NY + timedelta(hours=1)  # another campaign
    db.session.commit()
    send_campaign(campaign.id, gateway(fake_twilio.base_url), fast(now=lambda: NOON_NY + timedelta(hours=2)))
    by_customer = {r.customer_id: r for r in outbox(db, campaign.id)}
    assert by_customer[stays.id].status == "sent"
    assert by_customer[leaves.id].status == "skipped" and "opted out" in by_customer[leaves.id].error_message
    assert by_customer[busy.id].status == "skipped" and "frequency cap" in by_customer[busy.id].error_message
    assert [m["to"] for m in fake_twilio.messages] == [stays.phone]


def test_quiet_hours_wait_for_the_store_window_with_a_frozen_clock(db, people, make_store, fake_twilio, monkeypatch):
    tokyo = make_store("Tokyo", timezone="Asia/Tokyo")
    ny = people(2)
    jp = people(1, store_=tokyo)
    campaign = campaigns.create_campaign("Night", {}, "Hi {code}", control_share=0)
    late_ny = datetime(2026, 3, 11, 2, 30, tzinfo=timezone.utc)  # 22:30 in New York, 11:30 in Tokyo
    summary = send_campaign(campaign.id, gateway(fake_twilio.base_url), fast(now=lambda: late_ny, **QUIET))
    assert [m["to"] for m in fake_twilio.messages] == [jp[0].phone]
    rows = {r.customer_id: r for r in outbox(db, campaign.id)}
    opens = datetime(2026, 3, 11, 12, 0, tzinfo=timezone.utc)  # 08:00 EDT
    assert all(
        rows[c.id].status == "pending" and rows[c.id].next_attempt_at.replace(tzinfo=timezone.utc) == opens for c in ny
    )
    campaign = db.session.get(Campaign, campaign.id)
    assert campaign.status == "waiting" and "until 2026-03-11 12:00 UTC" in summary["message"]
    assert campaign.scheduled_for.replace(tzinfo=timezone.utc) == opens
    # Just before the window nothing goes; from 08:00 local the rest is sent.
    send_campaign(campaign.id, gateway(fake_twilio.base_url), fast(now=lambda: opens - timedelta(minutes=1), **QUIET))
    assert len(fake_twilio.messages) == 1
    queued = []
    monkeypatch.setattr(resuming, "start_send", lambda cid, **kw: queued.append(cid))
    assert resuming.resume_due(opens - timedelta(minutes=1)) == [] and queued == []
    assert resuming.resume_due(opens) == [campaign.id] == queued  # what cron's `flask campaign resume` does
    send_campaign(campaign.id, gateway(fake_twilio.base_url), fast(now=lambda: opens + timedelta(minutes=5), **QUIET))
    assert_exactly_once(fake_twilio, outbox(db, campaign.id))


@pytest.mark.parametrize(
    "local, quiet",
    [("20:59", False), ("21:00", True), ("02:00", True), ("07:59", True), ("08:00", False), ("12:00", False)],
)
def test_quiet_hours_boundaries(local, quiet):
    hours, minutes = map(int, local.split(":"))
    assert quiet_hours.is_quiet(datetime(2026, 1, 5, hours, minutes), "21:00", "08:00") is quiet


def test_rate_limit_spaces_sends(db, people, fake_twilio):
    people(5)
    campaign = campaigns.create_campaign("Slow", {}, "Hi {code}", control_share=0)
    clock = {"t": 0.0}
    sends = []

    def sleep(seconds):
        clock["t"] += seconds

    class Recording(TwilioGateway):
        def send(self, *args, **kwargs):
            sends.append(clock["t"])
            return super().send(*args, **kwargs)

    slow = Recording(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM, api_base=fake_twilio.base_url)
    send_campaign(campaign.id, slow, fast(rate_per_second=2, sleep=sleep, monotonic=lambda: clock["t"]))
    # 5 sends at 2 per second: one every half second on the sender's clock.
    assert len(fake_twilio.messages) == 5
    assert sends == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


def test_dry_run_sends_nothing(db, people, fake_twilio):
    people(2)
    campaign = campaigns.create_campaign("Dry", {}, "Hi {code}", control_share=0)
    send_campaign(campaign.id, DryRunGateway(), fast())
    rows = outbox(db, campaign.id)
    assert {r.status for r in rows} == {"dry-run"} and all(re.match(r"^DRY[0-9a-f]{31}$", r.message_sid) for r in rows)
    assert fake_twilio.requests == []


def test_cancel_leaves_unsent_rows_unsent(db, people, fake_twilio):
    people(3)
    campaign = campaigns.create_campaign("Stop it", {}, "Hi {code}", control_share=0)
    assert campaigns.cancel_campaign(campaign.id) == 3
    send_campaign(campaign.id, gateway(fake_twilio.base_url), fast())
    assert {r.status for r in outbox(db, campaign.id)} == {"cancelled"} and fake_twilio.requests == []
    assert db.session.get(Campaign, campaign.id).status == "cancelled"


def test_an_in_doubt_row_of_a_dead_worker_is_resolved_by_lookup(db, people, fake_twilio):
    """A row left in 'sending' whose message did reach Twilio, and one whose message did not."""
    reached, lost = people(2)
    campaign = campaigns.create_campaign("Crash", {}, "Hi {code}", control_share=0)
    rows = {r.customer_id: r for r in outbox(db, campaign.id)}
    gateway(fake_twilio.base_url).send(reached.phone, rows[reached.id].body)  # the dead worker's request
    long_ago = datetime.now(timezone.utc) - timedelta(minutes=10)
    for row in rows.values():
        row.status, row.claimed_by, row.claimed_at, row.attempts = "sending", "dead-worker", long_ago, 1
    db.session.commit()
    send_campaign(campaign.id, gateway(fake_twilio.base_url), fast(lease_seconds=120))
    assert_exactly_once(fake_twilio, outbox(db, campaign.id))
    assert len(fake_twilio.requests) == 2  # the found one was not sent again


def test_prism_contract_campaign_through_the_real_client(db, people, prism):
    """The real twilio client sends a campaign's message to Twilio's own OpenAPI mock."""
    people(1)
    campaign = campaigns.create_campaign("Contract", {}, "Hi {first_name}, code {code}", control_share=0)
    send_campaign(campaign.id, gateway(prism), fast(), callback_url=CALLBACK)
    [row] = outbox(db, campaign.id)
    assert row.status == "sent" and re.fullmatch(r"SM[0-9a-f]{32}", row.message_sid)
