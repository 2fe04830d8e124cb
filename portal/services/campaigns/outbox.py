"""Outbox rows: what their statuses mean, and Twilio's status callbacks that move them on.

An outbox row is one recipient of a campaign (portal/services/campaigns.py creates them; the
sender in portal/services/sending.py explains the in-progress states). Once a message is
sent, Twilio reports its fate on /sms/status (portal/webhooks.py); :func:`apply_status` maps
that onto the row without ever moving it backwards, and :func:`apply_pending_events` applies
callbacks that arrived before the sender had recorded the message's SID.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal import sms
from portal.extensions import db
from portal.models import Customer, OutboxMessage, SmsEvent
from portal.services.clock import aware
from portal.services.customers.customers import announce_opt_outs, set_consent

IN_PROGRESS = ("pending", "claimed", "sending", "in_doubt", "checking")
DELIVERED_LIKE = ("sent", "delivered", "undelivered", "failed")
FINAL = ("sent", "delivered", "undelivered", "failed", "skipped", "cancelled", "unknown", "dry-run", "control")
NO_SYNC = {"synchronize_session": False}  # each step commits and re-reads; no ORM bookkeeping

#: Twilio message statuses → outbox status, with a rank so a late "sent" never undoes "delivered".
STATUS_MAP = {
    "accepted": ("sent", 1),
    "scheduled": ("sent", 1),
    "queued": ("sent", 1),
    "sending": ("sent", 2),
    "sent": ("sent", 3),
    "delivered": ("delivered", 5),
    "read": ("delivered", 5),
    "undelivered": ("undelivered", 4),
    "failed": ("failed", 4),
    "canceled": ("failed", 4),
}
_RANK = {"sent": 3, "dry-run": 3, "undelivered": 4, "failed": 4, "delivered": 5}


def apply_status(message: OutboxMessage, status: str, error_code: int | None, at: datetime) -> bool:
    """Apply one status callback to an outbox row (never moving it backwards); True if it changed.

    The caller commits. A failure with 21610 also records the customer's opt-out.
    """
    mapped = STATUS_MAP.get((status or "").lower())
    if mapped is None or message.status not in _RANK:
        return False
    new, rank = mapped
    if rank < _RANK.get(message.status, 0) or (new == message.status and error_code == message.error_code):
        return False
    message.status = new
    if error_code is not None:
        message.error_code = error_code
    if new == "delivered" and message.delivered_at is None:
        message.delivered_at = at
    if error_code == sms.OPT_OUT_ERROR_CODE:
        customer = db.session.get(Customer, message.customer_id)
        if customer is not None and customer.sms_consent != "opted_out":
            set_consent(
                customer,
                "opted_out",
                "twilio_21610",
                effective_at=at,
                user_email="twilio",
                detail=f"Twilio error 21610 on message {message.message_sid}",
            )
    return True


def apply_pending_events(sid: str) -> None:
    """Apply status callbacks that arrived before the send was recorded (caller commits)."""
    message = db.session.scalar(
        select(OutboxMessage).where(OutboxMessage.message_sid == sid).execution_options(populate_existing=True)
    )
    if message is None:
        return
    events = db.session.scalars(
        select(SmsEvent)
        .where(SmsEvent.kind == "status", SmsEvent.message_sid == sid, SmsEvent.applied.is_(False))
        .order_by(SmsEvent.id)
    )
    for event in events:
        apply_status(message, event.status, event.error_code, aware(event.received_at))
        event.applied = True


def store_event(**values) -> SmsEvent | None:
    """Insert a Twilio callback's event; None when the same callback was already received (nothing to do)."""
    if db.session.scalar(select(SmsEvent.id).where(SmsEvent.dedupe_key == values["dedupe_key"])):
        return None
    event = SmsEvent(**values)
    db.session.add(event)
    try:
        db.session.flush()
    except IntegrityError:  # the same callback, delivered twice at the same moment
        db.session.rollback()
        return None
    return event


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def record_status_callback(form: Mapping[str, str]) -> None:
    """A verified /sms/status callback: move its message on, once (a repeat changes nothing).

    A callback that beats the worker's record step is kept and applied by ``apply_pending_events``.
    """
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if not sid or not status:
        return
    code = _int(form.get("ErrorCode"))
    event = store_event(
        kind="status",
        message_sid=sid[:64],
        status=status[:20],
        error_code=code,
        payload=dict(form),
        dedupe_key=f"status:{sid}:{status}:{code or ''}"[:120],
    )
    if event is not None:
        message = db.session.scalar(select(OutboxMessage).where(OutboxMessage.message_sid == sid))
        customer = None
        if message is not None:
            if code == sms.OPT_OUT_ERROR_CODE:  # the webhook below: did this callback opt them out?
                customer = db.session.get(Customer, message.customer_id)
                customer = customer if customer is not None and customer.sms_consent != "opted_out" else None
            apply_status(message, status, code, datetime.now(timezone.utc))
            event.applied = True
        db.session.commit()
        if customer is not None and customer.sms_consent == "opted_out":
            announce_opt_outs([customer], "twilio")
        if message is not None:  # the campaign's stored numbers; a 21610 opt-out counts in the customer's others
            from portal.services.summaries import campaigns as campaign_summaries

            campaign_summaries.changed([message.campaign_id], [message.customer_id] if customer is not None else [])
