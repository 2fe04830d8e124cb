"""A test send: one campaign message, as rendered for its first recipient, to the user's own phone.

It goes through the same gateway as the campaign (dry-run when Twilio is not configured) but never
touches the outbox: it is not a recipient, not counted in results or the frequency cap, and its
coupon is marked TEST and one character longer than any real code, so it can never be redeemed.
Each test send is an audit entry (action ``campaign.test_send``, with the number and Twilio's answer);
the same entries enforce the rate limit and give the form the number used last time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flask import current_app
from phonenumbers import PhoneNumberType
from sqlalchemy import func, select

from portal import sms
from portal.extensions import db
from portal.models import AuditEntry, Campaign, Customer, OutboxMessage, Store
from portal.services import audit, settings
from portal.services.campaigns.messages import CODE_LENGTH, DEFAULT_EXPIRY_DAYS, CampaignError, body_writer, new_codes
from portal.services.campaigns.phones import phone_type
from portal.services.clock import aware, zone

ACTION = "campaign.test_send"
PER_HOUR = 5
TEST_PREFIX = "TEST-"
#: Campaign states in which a test send still makes sense (nothing, or not everything, has gone out).
OPEN_STATES = ("draft", "queued", "waiting", "stopped", "sending")


class TestSendError(CampaignError):
    """A test send that was refused; the message is for the user."""

    __test__ = False  # not a pytest class, whatever its name


@dataclass
class TestSendResult:
    """What the test send did: where it went, the exact text, and the gateway's answer."""

    __test__ = False

    phone: str
    body: str
    code: str
    sid: str | None
    status: str
    dry_run: bool
    error: str | None = None


def test_code() -> str:
    """A coupon code that reads as a test and can never be a real one (one character longer)."""
    return TEST_PREFIX + new_codes(1)[0][: CODE_LENGTH - len(TEST_PREFIX.rstrip("-")) + 1]


def is_test_code(code: str | None) -> bool:
    """True for a code made by :func:`test_code` (typed with or without the dash)."""
    text = (code or "").strip().upper().replace("-", "").replace(" ", "")
    return text.startswith(TEST_PREFIX.rstrip("-")) and len(text) == CODE_LENGTH + 1


def sent_in_last_hour(user_email: str, now: datetime | None = None) -> int:
    """Test sends by ``user_email`` in the hour before ``now``."""
    now = now or datetime.now(timezone.utc)
    return (
        db.session.scalar(
            select(func.count()).where(
                AuditEntry.action == ACTION,
                AuditEntry.user_email == user_email,
                AuditEntry.at > now - timedelta(hours=1),
            )
        )
        or 0
    )


def next_allowed(user_email: str, now: datetime | None = None) -> datetime | None:
    """When ``user_email`` may test-send again (None: now)."""
    now = now or datetime.now(timezone.utc)
    times = db.session.scalars(
        select(AuditEntry.at)
        .where(
            AuditEntry.action == ACTION, AuditEntry.user_email == user_email, AuditEntry.at > now - timedelta(hours=1)
        )
        .order_by(AuditEntry.at.desc())
    ).all()
    if len(times) < PER_HOUR:
        return None
    return aware(times[PER_HOUR - 1]) + timedelta(hours=1)


def last_phone(user_email: str) -> str:
    """The number ``user_email`` test-sent to last (the form's default), or ""."""
    detail = db.session.scalar(
        select(AuditEntry.detail)
        .where(AuditEntry.action == ACTION, AuditEntry.user_email == user_email)
        .order_by(AuditEntry.id.desc())
        .limit(1)
    )
    return (detail or {}).get("phone", "") if isinstance(detail, dict) else ""


def _sample_person(campaign: Campaign) -> dict:
    """The first recipient's values (what they will read), else a made-up one in the campaign's store."""
    row = db.session.execute(
        select(Customer.name, Customer.tier, Customer.store_id)
        .join(OutboxMessage, OutboxMessage.customer_id == Customer.id)
        .where(OutboxMessage.campaign_id == campaign.id, OutboxMessage.group == "message")
        .order_by(OutboxMessage.id)
        .limit(1)
    ).first()
    if row is None:
        return {"customer_id": None, "phone": "", "first_name": "", "tier": None, "store_id": campaign.store_id}
    name, tier, store_id = row
    return {
        "customer_id": None,
        "phone": "",
        "first_name": (name or "").split(" ")[0],
        "tier": tier,
        "store_id": store_id,
    }


def render_test(campaign: Campaign, now: datetime | None = None) -> tuple[str, str]:
    """(body, code): the campaign's message for its first recipient, with a TEST coupon, marked as a test."""
    now = now or datetime.now(timezone.utc)
    stores = {s.id: s for s in db.session.scalars(select(Store))}
    rewards = {t: settings.get(f"reward.{t}") for t in settings.TIERS}
    person = _sample_person(campaign)
    expires_at = aware(campaign.expires_at) or now + timedelta(days=DEFAULT_EXPIRY_DAYS)
    body = body_writer(campaign.template, [person], stores, stores.get(campaign.store_id), expires_at, rewards)
    code = test_code()
    return "[TEST] " + body(person, code), code


def send_test(
    campaign: Campaign,
    phone_text: str,
    user_email: str,
    region: str = "US",
    gateway: sms.SmsGateway | None = None,
    now: datetime | None = None,
) -> TestSendResult:
    """Send the campaign's message to ``phone_text`` (the user's own phone) once; audited and committed.

    Raises TestSendError for a campaign already finished, an invalid or landline number, or more than
    PER_HOUR test sends by this user in the last hour. A refusal by the gateway is returned (and audited),
    not raised: the user sees Twilio's reason.
    """
    now = now or datetime.now(timezone.utc)
    if campaign.status not in OPEN_STATES:
        raise TestSendError(f"This campaign is {campaign.status}: a test send is for before sending.")
    allowed = next_allowed(user_email, now)
    if allowed is not None:
        store = db.session.get(Store, campaign.store_id) if campaign.store_id else None
        local = allowed.astimezone(zone(store.timezone if store else "UTC"))
        raise TestSendError(
            f"You have sent {PER_HOUR} test messages in the last hour; the next one is possible at {local:%H:%M %Z}."
        )
    e164, kind = phone_type((phone_text or "").strip(), region)
    if e164 is None:
        raise TestSendError(
            f"“{(phone_text or '').strip()[:32]}” is not a valid phone number; type it with its country code, "
            "e.g. +1 202 555 0143."
        )
    if kind == PhoneNumberType.FIXED_LINE:
        raise TestSendError(f"{e164} is a landline; a test SMS needs a mobile number.")
    body, code = render_test(campaign, now)
    gateway = gateway or sms.gateway_from_config(current_app.config)
    result = gateway.send(e164, body)
    entry = audit.record(
        ACTION,
        f"campaign:{campaign.id}",
        {
            "phone": e164,
            "code": code,
            "sid": result.sid,
            "status": result.status,
            "dry_run": bool(result.dry_run),
            "error_code": result.error_code,
        },
        user_email,
    )
    entry.at = now
    db.session.commit()
    error = None
    if not result.accepted:
        error = (
            f"Twilio refused it: {result.error_message or result.status}"
            + (f" (error {result.error_code})" if result.error_code else "")
            + "."
        )
    return TestSendResult(e164, body, code, result.sid, result.status, bool(result.dry_run), error)
