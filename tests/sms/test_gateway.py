"""The SMS gateway: the real twilio client against Prism (contract) and the fake (behaviour)."""

from __future__ import annotations

import re
import socket
from datetime import datetime, timedelta, timezone

import pytest
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN
from werkzeug.datastructures import ImmutableMultiDict

from portal.sms import (
    DryRunGateway,
    SmsGateway,
    SmsLookupError,
    TwilioGateway,
    compute_signature,
    gateway_from_config,
    twiml_message,
    verify_signature,
)
from portal.sms_text import HELP_WORDS, OPT_IN_WORDS, OPT_OUT_WORDS, classify_reply

SID_SHAPE = re.compile(r"^SM[0-9a-f]{32}$")
FROM = "+15005550006"
TO = "+15558675310"
CALLBACK = "https://portal.example.com/sms/status"


def twilio_gateway(base_url: str, **overrides) -> TwilioGateway:
    options = dict(from_number=FROM, api_base=base_url, timeout=5)
    options.update(overrides)
    return TwilioGateway(ACCOUNT_SID, AUTH_TOKEN, **options)


# --- contract: the real client against Twilio's own OpenAPI description ---------------------


def test_prism_accepts_the_message_the_real_client_creates(prism):
    result = twilio_gateway(prism).send(
        TO, "Hi Ann, 10% off at Corner Shop. Reply STOP to opt out", status_callback=CALLBACK
    )
    # Prism answers 422 when a request breaks the spec, so acceptance proves the request shape.
    assert result.accepted, result
    assert SID_SHAPE.match(result.sid)
    assert result.status == "queued"
    assert not result.retryable and not result.dry_run and result.error_code is None


def test_prism_accepts_a_messaging_service_sender(prism):
    gateway = twilio_gateway(prism, from_number=None, messaging_service_sid="MG" + "b" * 32)
    assert SID_SHAPE.match(gateway.send(TO, "Hello").sid)


def test_prism_accepts_the_reconciliation_lookup(prism):
    found = twilio_gateway(prism).find_sent(TO, "a body Prism never saw", since=datetime.now(timezone.utc))
    assert found is None


# --- behaviour against the recording fake -----------------------------------------------------


def test_send_records_recipient_body_sender_and_callback(fake_twilio):
    result = twilio_gateway(fake_twilio.base_url).send(TO, "Your code: AB12", CALLBACK)
    assert SID_SHAPE.match(result.sid)
    [request] = fake_twilio.requests
    assert (request.to, request.body, request.from_, request.status_callback) == (TO, "Your code: AB12", FROM, CALLBACK)
    assert request.authorized
    assert [m["sid"] for m in fake_twilio.sent_to(TO)] == [result.sid]


def test_no_status_callback_sends_none(fake_twilio):
    twilio_gateway(fake_twilio.base_url).send(TO, "hi")
    assert "StatusCallback" not in fake_twilio.requests[0].form


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limit_and_server_errors_are_retryable_and_not_retried_silently(fake_twilio, status):
    fake_twilio.fail_next(1, status=status)
    result = twilio_gateway(fake_twilio.base_url).send(TO, "hi")
    assert result.retryable and not result.accepted
    assert result.status == "temporary-error"
    assert result.http_status == status
    assert len(fake_twilio.requests) == 1  # one attempt: retries are the engine's decision
    assert fake_twilio.sent_to(TO) == []


def test_429_means_not_sent_but_5xx_may_have_been(fake_twilio):
    gateway = twilio_gateway(fake_twilio.base_url)
    fake_twilio.fail_next(1, status=429)
    limited = gateway.send(TO, "hi")
    fake_twilio.fail_next(1, status=500)
    crashed = gateway.send(TO, "hi")
    assert limited.error_code == 20429 and not limited.maybe_sent
    assert crashed.maybe_sent


@pytest.mark.parametrize("code", [21211, 21610, 21614, 21408])
def test_recipient_errors_are_permanent_with_their_code(fake_twilio, code):
    fake_twilio.fail_number(TO, status=400, code=code)
    result = twilio_gateway(fake_twilio.base_url).send(TO, "hi")
    assert not result.retryable and not result.maybe_sent and not result.account_error
    assert result.status == "failed"
    assert result.error_code == code
    assert result.error_message
    assert result.opted_out is (code == 21610)


def test_permanent_rule_only_hits_that_number(fake_twilio):
    fake_twilio.fail_number(TO, code=21610)
    assert twilio_gateway(fake_twilio.base_url).send("+15558675311", "hi").accepted


def test_wrong_credentials_are_an_account_error(fake_twilio):
    gateway = TwilioGateway(ACCOUNT_SID, "wrong-token", from_number=FROM, api_base=fake_twilio.base_url)
    result = gateway.send(TO, "hi")
    assert result.http_status == 401 and result.error_code == 20003
    assert result.account_error and not result.retryable


def test_timeout_is_retryable_and_flags_that_the_message_may_exist(fake_twilio):
    fake_twilio.delay_next(1, seconds=2.0)
    result = twilio_gateway(fake_twilio.base_url, timeout=0.3).send(TO, "coupon X1")
    assert result.retryable and result.maybe_sent and not result.accepted
    # Twilio did create it: resending blindly would message this customer twice.
    assert len(fake_twilio.sent_to(TO)) == 1


def test_connection_dropped_after_sending_may_have_sent(fake_twilio):
    fake_twilio.drop_next(1)
    result = twilio_gateway(fake_twilio.base_url).send(TO, "hi")
    assert result.retryable and result.maybe_sent
    assert len(fake_twilio.requests) == 1


def test_connection_refused_is_retryable_and_certainly_not_sent():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before use: nobody listens there
    result = twilio_gateway(f"http://127.0.0.1:{port}").send(TO, "hi")
    assert result.retryable and not result.maybe_sent and not result.accepted


def test_twilio_edge_in_environment_does_not_redirect_a_mock_base(fake_twilio, monkeypatch):
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    assert twilio_gateway(fake_twilio.base_url).send(TO, "hi").accepted


def test_find_sent_recovers_the_sid_of_a_timed_out_send(fake_twilio):
    claimed_at = datetime.now(timezone.utc) - timedelta(minutes=1)
    fake_twilio.delay_next(1, seconds=2.0)
    gateway = twilio_gateway(fake_twilio.base_url, timeout=0.3)
    assert gateway.send(TO, "coupon X1").maybe_sent
    sid = gateway.find_sent(TO, "coupon X1", since=claimed_at)
    assert sid == fake_twilio.sent_to(TO)[0]["sid"]
    assert gateway.find_sent(TO, "coupon X2", since=claimed_at) is None
    assert gateway.find_sent(TO, "coupon X1", since=claimed_at + timedelta(hours=1)) is None
    assert gateway.find_sent("+15558675311", "coupon X1", since=claimed_at) is None


def test_find_sent_raises_when_twilio_cannot_be_asked(fake_twilio):
    gateway = twilio_gateway(fake_twilio.base_url)
    fake_twilio.stop()
    with pytest.raises(SmsLookupError):
        gateway.find_sent(TO, "hi", since=datetime.now(timezone.utc))


# --- configuration and dry run ----------------------------------------------------------------

FULL = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_FROM": FROM}


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_FROM": FROM},
        {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_FROM": FROM},
        {**FULL, "TWILIO_ACCOUNT_SID": "  "},
        {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN},
        {**FULL, "TWILIO_FROM": None},
    ],
)
def test_incomplete_configuration_means_dry_run(config):
    gateway = gateway_from_config(config)
    assert isinstance(gateway, DryRunGateway) and gateway.name == "dry-run"
    assert gateway.reason


def test_missing_sender_is_named_in_the_dry_run_reason():
    gateway = gateway_from_config({k: v for k, v in FULL.items() if k != "TWILIO_FROM"})
    assert "TWILIO_FROM" in gateway.reason


def test_full_configuration_sends_through_twilio_to_the_configured_base(fake_twilio):
    gateway = gateway_from_config({**FULL, "TWILIO_API_BASE": fake_twilio.base_url + "/"})
    assert isinstance(gateway, TwilioGateway) and gateway.name == "twilio"
    assert isinstance(gateway, SmsGateway)
    assert gateway.send(TO, "hi").accepted
    assert len(fake_twilio.requests) == 1


def test_messaging_service_alone_is_a_sender(fake_twilio):
    gateway = gateway_from_config(
        {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_MESSAGING_SERVICE_SID": "MG" + "c" * 32,
            "TWILIO_API_BASE": fake_twilio.base_url,
        }
    )
    result = gateway.send(TO, "hi")
    assert result.status == "accepted"
    assert fake_twilio.requests[0].messaging_service_sid == "MG" + "c" * 32
    assert fake_twilio.requests[0].from_ is None


def test_dry_run_sends_nothing_and_gives_distinct_sid_shaped_ids(fake_twilio):
    gateway = gateway_from_config({"TWILIO_API_BASE": fake_twilio.base_url})
    results = [gateway.send(TO, "hi", CALLBACK) for _ in range(3)]
    assert all(r.dry_run and r.accepted and r.status == "dry-run" for r in results)
    assert all(r.sid.startswith("DRY") and len(r.sid) == 34 for r in results)
    assert len({r.sid for r in results}) == 3
    assert fake_twilio.requests == []
    assert gateway.find_sent(TO, "hi", datetime.now(timezone.utc)) is None


def test_gateway_refuses_to_be_built_without_a_sender():
    with pytest.raises(ValueError):
        TwilioGateway(ACCOUNT_SID, AUTH_TOKEN)


# --- webhooks: signatures, keywords, TwiML ----------------------------------------------------

# Twilio's published example (auth token 12345).
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
DOC_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilios_published_signature_is_valid():
    assert verify_signature("12345", DOC_URL, DOC_PARAMS, DOC_SIGNATURE)
    assert compute_signature("12345", DOC_URL, DOC_PARAMS) == DOC_SIGNATURE


def test_signature_works_with_flask_form_multidict():
    form = ImmutableMultiDict(list(DOC_PARAMS.items()))
    assert verify_signature("12345", DOC_URL, form, DOC_SIGNATURE)


@pytest.mark.parametrize(
    "token, url, params, signature",
    [
        ("12345", DOC_URL, DOC_PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ"),  # forged
        ("12345", DOC_URL, {**DOC_PARAMS, "Digits": "9999"}, DOC_SIGNATURE),  # tampered body
        ("12345", DOC_URL.replace("mycompany", "evil"), DOC_PARAMS, DOC_SIGNATURE),  # other URL
        ("54321", DOC_URL, DOC_PARAMS, DOC_SIGNATURE),  # other account
        ("12345", DOC_URL, DOC_PARAMS, None),  # unsigned
        ("12345", DOC_URL, DOC_PARAMS, ""),
        ("", DOC_URL, DOC_PARAMS, DOC_SIGNATURE),  # no token set
    ],
)
def test_forged_or_missing_signatures_are_rejected(token, url, params, signature):
    assert not verify_signature(token, url, params, signature)


def test_sha256_signature_settings_header_is_honoured():
    import base64
    import hashlib
    import hmac

    payload = DOC_URL + "".join(k + DOC_PARAMS[k] for k in sorted(DOC_PARAMS))
    digest = hmac.new(b"12345", payload.encode(), hashlib.sha256).digest()
    sig256 = base64.b64encode(digest).decode()
    header = "key=webhooks_sharedkey_x,algorithm=HMAC_SHA256"
    assert verify_signature("12345", DOC_URL, DOC_PARAMS, sig256, settings_header=header)
    assert not verify_signature("12345", DOC_URL, DOC_PARAMS, sig256)  # SHA-1 assumed


def variants(word: str) -> list[str]:
    return [
        word,
        word.lower(),
        word.capitalize(),
        f"  {word.lower()}\n",
        f"{word}!",
        f"¡{word.lower()}!",
        f'"{word.capitalize()}."',
    ]


@pytest.mark.parametrize("body", [v for w in sorted(OPT_OUT_WORDS) for v in variants(w)])
def test_every_opt_out_word_in_any_case_opts_out(body):
    assert classify_reply(body) == "opt_out"


@pytest.mark.parametrize("body", [v for w in sorted(OPT_IN_WORDS) for v in variants(w)])
def test_every_opt_in_word_in_any_case_opts_in(body):
    assert classify_reply(body) == "opt_in"


@pytest.mark.parametrize("body", [v for w in sorted(HELP_WORDS) for v in variants(w)])
def test_help_words_ask_for_help(body):
    assert classify_reply(body) == "help"


def test_keyword_lists_are_twilios_defaults():
    assert OPT_OUT_WORDS == {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
    assert OPT_IN_WORDS == {"START", "YES", "UNSTOP"}
    assert HELP_WORDS == {"HELP", "INFO"}


@pytest.mark.parametrize(
    "body",
    ["stop please", "please stop", "STOPP", "don't stop", "st op", "yes!! see you", "thanks", "", "   ", "!!!", None],
)
def test_anything_but_a_single_keyword_is_no_command(body):
    assert classify_reply(body) is None


def test_help_reply_is_twiml_with_the_escaped_contact_line():
    xml = twiml_message("Corner Shop & Co: call 555-0100. Reply STOP to opt out")
    assert xml.startswith("<?xml")
    assert "<Response><Message>Corner Shop &amp; Co: call 555-0100. Reply STOP to opt out</Message></Response>" in xml


def test_no_reply_is_an_empty_twiml_response():
    assert twiml_message(None).endswith("<Response />")
