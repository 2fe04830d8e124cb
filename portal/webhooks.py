"""Twilio webhooks: /sms/status and /sms/inbound (no login; X-Twilio-Signature required).

Both check the signature against the URL Twilio called — PUBLIC_BASE_URL + path when set
(behind a proxy the app sees another host), else the request URL — with TWILIO_AUTH_TOKEN;
forged, unsigned, or no token configured: 403. Both are idempotent: every callback is stored
once in ``sms_events`` under a dedupe key, and a repeat changes nothing.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, Response, abort, current_app, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal import sms
from portal.extensions import db
from portal.models import Customer, OutboxMessage, SmsEvent, Store
from portal.services.customers import set_consent
from portal.services.sending import apply_status

bp = Blueprint("webhooks", __name__)


def _public_url() -> str:
    base = (current_app.config.get("PUBLIC_BASE_URL") or "").strip().rstrip("/")
    if not base:
        return request.url
    query = request.query_string.decode()
    return base + request.path + (f"?{query}" if query else "")


def _verified_form() -> dict[str, str]:
    """The POSTed parameters, or 403 unless Twilio signed exactly these for our public URL."""
    token = current_app.config.get("TWILIO_AUTH_TOKEN")
    form = request.form.to_dict(flat=True)
    if not sms.verify_signature(token or "", _public_url(), request.form, request.headers.get("X-Twilio-Signature"),
                                request.headers.get("X-Twilio-Webhooks-Signature-Settings")):
        abort(403)
    return form


def _store_event(**values) -> SmsEvent | None:
    """Insert the event; None when the same callback was already received (nothing to do)."""
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


@bp.route("/sms/status", methods=["POST"])
def sms_status():
    """A delivery status callback: update the message, or keep it until the send is recorded."""
    form = _verified_form()
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if not sid or not status:
        return Response("", 204)
    code = _int(form.get("ErrorCode"))
    event = _store_event(kind="status", message_sid=sid[:64], status=status[:20], error_code=code,
                         payload=form, dedupe_key=f"status:{sid}:{status}:{code or ''}"[:120])
    if event is not None:
        message = db.session.scalar(select(OutboxMessage).where(OutboxMessage.message_sid == sid))
        if message is not None:
            apply_status(message, status, code, datetime.now(timezone.utc))
            event.applied = True
        # else: the callback beat the worker's record step; sending.apply_pending_events applies it.
        db.session.commit()
    return Response("", 204)


@bp.route("/sms/inbound", methods=["POST"])
def sms_inbound():
    """A customer's reply: STOP words opt out, START/YES/UNSTOP opt back in, HELP/INFO answer."""
    form = _verified_form()
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    phone = (form.get("From") or "").strip()
    body = form.get("Body") or ""
    reply = sms.classify_reply(body)
    keyword = body.strip().strip(".!?¡¿ ").upper()[:20] if reply else None
    customers = db.session.scalars(select(Customer).where(Customer.phone == phone)).all() if phone else []
    event = _store_event(kind="inbound", message_sid=sid[:64] or None, from_phone=phone[:20] or None,
                         keyword=keyword, payload=form,
                         dedupe_key=f"inbound:{sid or phone + ':' + body}"[:120])
    text = None
    if reply == "help":
        text = _contact_line(customers)
    if event is not None:
        now = datetime.now(timezone.utc)
        if reply in ("opt_out", "opt_in"):
            status = "opted_out" if reply == "opt_out" else "opted_in"
            for customer in customers:
                # START only restores an opt-out: a reply alone never creates a first opt-in.
                if customer.sms_consent == status or (status == "opted_in" and customer.sms_consent != "opted_out"):
                    continue
                set_consent(customer, status, "sms_keyword", effective_at=now, user_email="sms-reply",
                            keyword=keyword, detail=f"SMS reply {body.strip()[:40]!r} from {phone}")
        event.applied = True
        db.session.commit()
    return Response(sms.twiml_message(text), mimetype="text/xml")


def _contact_line(customers: list[Customer]) -> str:
    """The HELP answer: the customer's store contact line (any store's when the number is unknown)."""
    store = next((c.store for c in customers if c.store is not None and c.store.contact_line), None)
    if store is None:
        store = db.session.scalar(select(Store).where(Store.contact_line != "").order_by(Store.id).limit(1))
    line = store.contact_line if store is not None else "Contact the store for help."
    return f"{line} Reply STOP to opt out."
