"""Twilio webhooks: signatures, status callbacks (early, repeated, out of order), STOP/START/HELP."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fake_twilio import AUTH_TOKEN
from sqlalchemy import func, select

from portal.models import ConsentEvent, Customer, OutboxMessage, SmsEvent
from portal.services.campaigns import campaigns
from portal.services.campaigns.sending import SendOptions, send_campaign
from portal.sms import DryRunGateway, compute_signature

PUBLIC = "https://loyalist.example.com"


@pytest.fixture(autouse=True)
def twilio_token(app):
    saved = app.config.get("TWILIO_AUTH_TOKEN"), app.config.get("PUBLIC_BASE_URL")
    app.config["TWILIO_AUTH_TOKEN"], app.config["PUBLIC_BASE_URL"] = AUTH_TOKEN, PUBLIC
    yield
    app.config["TWILIO_AUTH_TOKEN"], app.config["PUBLIC_BASE_URL"] = saved


def post(client, path, params, signature="sign", url=None):
    headers = {}
    if signature == "sign":
        headers["X-Twilio-Signature"] = compute_signature(AUTH_TOKEN, url or PUBLIC + path, params)
    elif signature:
        headers["X-Twilio-Signature"] = signature
    return client.post(path, data=params, headers=headers)


@pytest.fixture()
def customer(make_store, make_customer):
    store = make_store("Corner Shop", contact_line="Corner Shop, 12 Main St, call 202-555-0100")
    return make_customer(
        store, phone="+12025550142", sms_consent="opted_in", sms_consent_at=datetime(2025, 1, 1, tzinfo=timezone.utc)
    )


@pytest.fixture()
def sent_row(db, customer):
    """A campaign row already sent, as the worker records it (SID known)."""
    campaign = campaigns.create_campaign("Hi", {}, "Hello {code}", control_share=0)
    send_campaign(
        campaign.id, DryRunGateway(), SendOptions(rate_per_second=1000, quiet_start="00:00", quiet_end="00:00")
    )
    row = db.session.scalar(select(OutboxMessage).where(OutboxMessage.campaign_id == campaign.id))
    row.status, row.message_sid = "sent", "SM" + "1" * 32
    db.session.commit()
    return row


def status_params(sid, status, **extra):
    return {
        "MessageSid": sid,
        "MessageStatus": status,
        "AccountSid": "AC" + "a" * 32,
        "To": "+12025550142",
        "ApiVersion": "2010-04-01",
        **extra,
    }


@pytest.mark.parametrize("path", ["/sms/status", "/sms/inbound"])
@pytest.mark.parametrize("signature", [None, "forged", "wrong-url"])
def test_unsigned_or_forged_callbacks_are_refused(client, customer, path, signature):
    params = {"MessageSid": "SM" + "2" * 32, "From": customer.phone, "Body": "STOP", "MessageStatus": "delivered"}
    if signature == "wrong-url":
        response = post(client, path, params, url="https://attacker.example.com" + path)
    else:
        response = post(client, path, params, signature=signature)
    assert response.status_code == 403
    assert customer.sms_consent == "opted_in"


def test_no_token_configured_refuses_everything(client, app, customer):
    app.config["TWILIO_AUTH_TOKEN"] = None
    assert post(client, "/sms/inbound", {"From": customer.phone, "Body": "STOP"}).status_code == 403


def test_signature_uses_request_url_without_public_base(client, app, sent_row):
    app.config["PUBLIC_BASE_URL"] = None
    params = status_params(sent_row.message_sid, "delivered")
    assert post(client, "/sms/status", params, url="http://localhost/sms/status").status_code == 204


def test_status_callback_updates_the_message_and_tolerates_unknown_params(db, client, sent_row):
    params = status_params(sent_row.message_sid, "delivered", RawDlrDoneDate="2603101200", SomethingNew="x")
    assert post(client, "/sms/status", params).status_code == 204
    db.session.refresh(sent_row)
    assert sent_row.status == "delivered" and sent_row.delivered_at is not None


def test_failed_with_error_code_and_no_going_back(db, client, sent_row):
    post(client, "/sms/status", status_params(sent_row.message_sid, "undelivered", ErrorCode="30003"))
    post(client, "/sms/status", status_params(sent_row.message_sid, "sent"))  # late, out of order
    db.session.refresh(sent_row)
    assert (sent_row.status, sent_row.error_code) == ("undelivered", 30003)


def test_same_callback_three_times_changes_nothing_twice(db, client, sent_row):
    params = status_params(sent_row.message_sid, "failed", ErrorCode="21610")
    for _ in range(3):
        assert post(client, "/sms/status", params).status_code == 204
    assert db.session.scalar(select(func.count()).select_from(SmsEvent)) == 1
    events = db.session.scalars(
        select(ConsentEvent).where(ConsentEvent.customer_id == sent_row.customer_id, ConsentEvent.status == "opted_out")
    ).all()
    assert [e.source for e in events] == ["twilio_21610"]


def test_callback_before_the_send_was_recorded_is_kept_and_applied(db, client, customer, fake_twilio):
    """Twilio can call back before the worker has stored the SID: the event waits for it."""
    from test_sending import gateway

    campaign = campaigns.create_campaign("Early", {}, "Hello {code}", control_share=0)
    real = gateway(fake_twilio.base_url)

    class CallbackFirst:
        name = "twilio"

        def send(self, to, body, status_callback=None):
            result = real.send(to, body, status_callback)
            # Twilio's callback lands while our worker has not recorded the SID yet.
            response = post(client, "/sms/status", status_params(result.sid, "delivered"))
            assert response.status_code == 204
            return result

        def find_sent(self, *args):
            return real.find_sent(*args)

    send_campaign(
        campaign.id, CallbackFirst(), SendOptions(rate_per_second=1000, quiet_start="00:00", quiet_end="00:00")
    )
    db.session.expire_all()
    row = db.session.scalar(select(OutboxMessage).where(OutboxMessage.campaign_id == campaign.id))
    assert row.status == "delivered" and row.message_sid == fake_twilio.messages[0]["sid"]
    assert db.session.scalar(select(SmsEvent.applied)) is True


def inbound(client, body, phone="+12025550142", sid=None):
    params = {
        "MessageSid": sid or f"SM{abs(hash((body, phone))) % 10**32:032d}",
        "From": phone,
        "To": "+15005550006",
        "Body": body,
        "AccountSid": "AC" + "a" * 32,
        "NumMedia": "0",
    }
    return post(client, "/sms/inbound", params)


def test_stop_then_start_round_trip_is_recorded(db, client, customer):
    response = inbound(client, " stop ", sid="SM" + "3" * 32)
    assert response.status_code == 200 and response.mimetype == "text/xml"
    assert db.session.get(Customer, customer.id).sms_consent == "opted_out"
    inbound(client, "Start", sid="SM" + "4" * 32)
    db.session.expire_all()
    assert db.session.get(Customer, customer.id).sms_consent == "opted_in"
    events = db.session.scalars(
        select(ConsentEvent).where(ConsentEvent.customer_id == customer.id).order_by(ConsentEvent.id)
    ).all()
    assert [(e.status, e.source, e.keyword) for e in events] == [
        ("opted_out", "sms_keyword", "STOP"),
        ("opted_in", "sms_keyword", "START"),
    ]
    assert all(e.effective_at is not None for e in events)


@pytest.mark.parametrize("word", ["STOPALL", "unsubscribe", "Cancel", "END", "quit", "REVOKE", "optout"])
def test_every_default_opt_out_word(db, client, customer, word):
    inbound(client, word)
    assert db.session.get(Customer, customer.id).sms_consent == "opted_out"


def test_a_sentence_with_stop_in_it_is_not_an_opt_out(db, client, customer):
    inbound(client, "please don't stop the offers")
    assert db.session.get(Customer, customer.id).sms_consent == "opted_in"


def test_same_stop_twice_records_one_event(db, client, customer):
    for _ in range(2):
        inbound(client, "STOP", sid="SM" + "5" * 32)
    assert db.session.scalar(select(func.count()).select_from(ConsentEvent)) == 1


def test_start_alone_does_not_create_a_first_opt_in(db, client, make_customer):
    stranger = make_customer(phone="+12025550177")
    inbound(client, "YES", phone=stranger.phone)
    assert db.session.get(Customer, stranger.id).sms_consent == "unknown"


def test_help_answers_with_the_store_contact_line(client, customer):
    response = inbound(client, "help")
    xml = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<Message>Corner Shop, 12 Main St, call 202-555-0100 Reply STOP to opt out.</Message>" in xml
    assert customer.sms_consent == "opted_in"
