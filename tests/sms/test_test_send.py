"""A test send to the manager's own phone: the same gateway, a TEST coupon that never redeems, not a recipient,
audited, at most 5 an hour per user, phone numbers checked with phonenumbers."""

from __future__ import annotations

import html
from datetime import datetime, timedelta, timezone

import pytest
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN
from sqlalchemy import func, select

from portal.models import AuditEntry, Customer, OutboxMessage
from portal.services.campaigns import campaigns, redemption
from portal.services.campaigns import test_send as ts
from tests.conftest import post_form

NOW = datetime.now(timezone.utc)
MOBILE = "+1 202 555 0143"


@pytest.fixture()
def store(make_store):
    return make_store("Corner Shop", sender_name="CornerShop", timezone="America/New_York")


@pytest.fixture()
def campaign(db, store, make_customer):
    for i in range(3):
        make_customer(
            store, name=f"Ann{i} Lee", tier="Gold", sms_consent="opted_in", sms_consent_at=NOW - timedelta(days=9)
        )
    return campaigns.create_campaign(
        "Spring", {"store": "Corner Shop"}, "Hi {first_name}, {code} until {expires}", control_share=0
    )


@pytest.fixture()
def twilio_configured(app, fake_twilio):
    keys = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM", "TWILIO_API_BASE")
    saved = {k: app.config.get(k) for k in keys}
    app.config.update(
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_FROM="+15005550006",
        TWILIO_API_BASE=fake_twilio.base_url,
    )
    yield fake_twilio
    app.config.update(saved)


def test_send(client, campaign, phone=MOBILE):
    return post_form(
        client,
        f"/campaigns/{campaign.id}/test-send",
        {"phone": phone},
        token_from=f"/campaigns/{campaign.id}/confirm",
        follow_redirects=True,
    )


test_send.__test__ = False  # a helper, not a test


def test_a_manager_test_sends_through_twilio_and_nothing_counts(
    client, login_as, store, campaign, db, twilio_configured
):
    manager = login_as("manager", store=store)
    before = db.session.scalar(select(func.count()).select_from(OutboxMessage))
    page = html.unescape(test_send(client, campaign).get_data(as_text=True))
    assert "Test message sent to +12025550143 with coupon TEST-" in page
    [message] = twilio_configured.messages
    assert message["to"] == "+12025550143"
    assert message["body"].startswith("[TEST] CornerShop: Hi Ann0, TEST-")  # the first recipient's text
    code = message["body"].split(", ")[1].split(" ")[0]
    assert ts.is_test_code(code) and len(code.replace("-", "")) == campaigns.CODE_LENGTH + 1
    # not a recipient: no outbox row, no customer's last-SMS time, nothing in the results
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == before
    assert db.session.scalar(select(func.count()).where(Customer.last_sms_at.is_not(None))) == 0
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "campaign.test_send"))
    assert entry.user_email == manager.email and entry.target == f"campaign:{campaign.id}"
    assert entry.detail["phone"] == "+12025550143" and entry.detail["sid"] == message["sid"]
    # the confirm page offers the same number next time
    confirm = client.get(f"/campaigns/{campaign.id}/confirm").get_data(as_text=True)
    assert 'value="+12025550143"' in confirm and "4 left now" in confirm


def test_the_test_coupon_is_never_redeemable(db, campaign, store):
    body, code = ts.render_test(campaign)
    assert body.startswith("[TEST] ") and code in body
    customer = db.session.scalar(select(Customer))
    with pytest.raises(redemption.RedemptionError, match="TEST coupon"):
        redemption.redeem_by_staff(code, customer, "m@example.com", store.id)
    with pytest.raises(redemption.RedemptionError, match="TEST coupon"):
        redemption.redeem_by_staff(code.replace("-", " ").lower(), customer, "m@example.com", store.id)


def test_dry_run_records_without_sending(client, login_as, store, campaign, db):
    login_as("manager", store=store)
    page = html.unescape(test_send(client, campaign).get_data(as_text=True))
    assert "Dry run: the test message to +12025550143 was recorded, not sent" in page
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "campaign.test_send"))
    assert entry.detail["dry_run"] is True and entry.detail["sid"].startswith("DRY")


@pytest.mark.parametrize(
    ("phone", "reason"),
    [
        ("12", "“12” is not a valid phone number"),
        ("not a phone", "is not a valid phone number"),
        ("+44 20 7946 0000", "+442079460000 is a landline"),
        ("", "Type your own mobile number."),
    ],
)
def test_bad_numbers_are_refused_with_the_reason(client, login_as, store, campaign, db, phone, reason):
    login_as("manager", store=store)
    page = html.unescape(test_send(client, campaign, phone).get_data(as_text=True))
    assert "Test message not sent" in page and reason in page
    assert db.session.scalar(select(func.count()).where(AuditEntry.action == "campaign.test_send")) == 0


def test_five_an_hour_per_user(client, login_as, store, campaign, db, twilio_configured):
    login_as("manager", store=store)
    for _ in range(ts.PER_HOUR):
        assert "Test message sent" in test_send(client, campaign).get_data(as_text=True)
    page = html.unescape(test_send(client, campaign).get_data(as_text=True))
    assert "You have sent 5 test messages in the last hour; the next one is possible at" in page
    assert len(twilio_configured.messages) == ts.PER_HOUR
    assert "disabled>Send a test" in client.get(f"/campaigns/{campaign.id}/confirm").get_data(as_text=True)
    # an hour later it is possible again
    assert ts.next_allowed("manager-home store@example.com", NOW + timedelta(hours=1, minutes=1)) is None


def test_twilio_refusal_is_shown_not_hidden(client, login_as, store, campaign, twilio_configured):
    twilio_configured.fail_number("+12025550143", status=400, code=21610)
    login_as("manager", store=store)
    page = html.unescape(test_send(client, campaign).get_data(as_text=True))
    assert "Test message to +12025550143 not sent. Twilio refused it" in page and "21610" in page


def test_marketers_cannot_and_finished_campaigns_refuse(client, login_as, store, campaign, db):
    login_as("marketer")
    response = post_form(client, f"/campaigns/{campaign.id}/test-send", {"phone": MOBILE}, token_from="/campaigns")
    assert response.status_code == 403
    campaign.status = "done"
    with pytest.raises(ts.TestSendError, match="This campaign is done"):
        ts.send_test(campaign, MOBILE, "a@example.com")
