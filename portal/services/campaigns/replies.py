"""Customers' SMS replies: STOP words opt out, START/YES/UNSTOP opt back in, HELP/INFO get the store's contact line."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from sqlalchemy import select

from portal import sms_text
from portal.extensions import db
from portal.models import Customer, Store
from portal.services.campaigns.outbox import store_event
from portal.services.customers.customers import announce_opt_outs, consent_committed, set_consent


def record_reply(form: Mapping[str, str]) -> str | None:
    """A verified /sms/inbound message: record the consent it asks for, once; returns the text to answer, if any."""
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    phone = (form.get("From") or "").strip()
    body = form.get("Body") or ""
    reply = sms_text.classify_reply(body)
    keyword = body.strip().strip(".!?¡¿ ").upper()[:20] if reply else None
    customers = db.session.scalars(select(Customer).where(Customer.phone == phone)).all() if phone else []
    event = store_event(
        kind="inbound",
        message_sid=sid[:64] or None,
        from_phone=phone[:20] or None,
        keyword=keyword,
        payload=dict(form),
        dedupe_key=f"inbound:{sid or phone + ':' + body}"[:120],
    )
    text = _contact_line(customers) if reply == "help" else None
    opted_out = []
    if event is not None:
        now = datetime.now(timezone.utc)
        if reply in ("opt_out", "opt_in"):
            status = "opted_out" if reply == "opt_out" else "opted_in"
            for customer in customers:
                # START only restores an opt-out: a reply alone never creates a first opt-in.
                if customer.sms_consent == status or (status == "opted_in" and customer.sms_consent != "opted_out"):
                    continue
                set_consent(
                    customer,
                    status,
                    "sms_keyword",
                    effective_at=now,
                    user_email="sms-reply",
                    keyword=keyword,
                    detail=f"SMS reply {body.strip()[:40]!r} from {phone}",
                )
                if status == "opted_out":
                    opted_out.append(customer)
        event.applied = True
        db.session.commit()
        consent_committed()  # START and STOP move the store's stored opted-out count
    if opted_out:
        announce_opt_outs(opted_out, "sms_reply")
        from portal.services.summaries import campaigns as campaign_summaries

        campaign_summaries.changed(customer_ids=[c.id for c in opted_out])  # "opted out since" on their campaigns
    return text


def _contact_line(customers: list[Customer]) -> str:
    """The HELP answer: the customer's store contact line (any store's when the number is unknown)."""
    store = next((c.store for c in customers if c.store is not None and c.store.contact_line), None)
    if store is None:
        store = db.session.scalar(select(Store).where(Store.contact_line != "").order_by(Store.id).limit(1))
    line = store.contact_line if store is not None else "Contact the store for help."
    return f"{line} Reply STOP to opt out."
