"""Outbox rows: what their statuses mean, and Twilio's status callbacks that move them on.

An outbox row is one recipient of a campaign (portal/services/campaigns.py creates them; the
sender in portal/services/sending.py explains the in-progress states). Once a message is
sent, Twilio reports its fate on /sms/status (portal/webhooks.py); :func:`apply_status` maps
that onto the row without ever moving it backwards, and :func:`apply_pending_events` applies
callbacks that arrived before the sender had recorded the message's SID.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from portal import sms
from portal.extensions import db
from portal.models import Customer, OutboxMessage, SmsEvent
from portal.services.clock import aware
from portal.services.customers import set_consent

IN_PROGRESS = ("pending", "claimed", "sending", "in_doubt", "checking")
DELIVERED_LIKE = ("sent", "delivered", "undelivered", "failed")
FINAL = ("sent", "delivered", "undelivered", "failed", "skipped", "cancelled", "unknown", "dry-run", "control")
NO_SYNC = {"synchronize_session": False}  # each step commits and re-reads; no ORM bookkeeping

#: Twilio message statuses → outbox status, with a rank so a late "sent" never undoes "delivered".
STATUS_MAP = {
    "accepted": ("sent", 1), "scheduled": ("sent", 1), "queued": ("sent", 1), "sending": ("sent", 2),
    "sent": ("sent", 3), "delivered": ("delivered", 5), "read": ("delivered", 5),
    "undelivered": ("undelivered", 4), "failed": ("failed", 4), "canceled": ("failed", 4),
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
            set_consent(customer, "opted_out", "twilio_21610", effective_at=at, user_email="twilio",
                        detail=f"Twilio error 21610 on message {message.message_sid}")
    return True


def apply_pending_events(sid: str) -> None:
    """Apply status callbacks that arrived before the send was recorded (caller commits)."""
    message = db.session.scalar(select(OutboxMessage).where(OutboxMessage.message_sid == sid)
                                .execution_options(populate_existing=True))
    if message is None:
        return
    events = db.session.scalars(select(SmsEvent).where(
        SmsEvent.kind == "status", SmsEvent.message_sid == sid, SmsEvent.applied.is_(False)).order_by(SmsEvent.id))
    for event in events:
        apply_status(message, event.status, event.error_code, aware(event.received_at))
        event.applied = True
