"""Events to deliveries: one row per (event, endpoint), sent by the ``webhooks.deliver`` job with retries.

A delivery is a POST of the JSON event with ``Loyalist-Signature``; a 2xx answer delivers it. Any
other answer, or no answer (timeout, refused connection), schedules the next attempt after
``BACKOFF`` (30 s, 2 min, 10 min, 1 h, 6 h); after the last one it is ``failed``. Each attempt's status
code and the start of the answer are kept for the admin page. A receiver must treat ``id`` as the
idempotency key: a retry after a lost answer delivers the same event again.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from portal import jobs
from portal.extensions import db
from portal.models import WebhookDelivery, WebhookEndpoint
from portal.services.webhooks_out.signing import HEADER, sign

log = logging.getLogger(__name__)

JOB = "webhooks.deliver"
EVENTS = {
    "customer.tier_changed": "A customer's tier changed (up or down).",
    "customer.high_risk": "A customer's churn band became High.",
    "customer.lost": "A customer's lifecycle became Lost.",
    "coupon.redeemed": "A campaign's coupon was redeemed.",
    "customer.opted_out": "A customer opted out of SMS.",
    "import.finished": "A purchases import (a file or an API batch) finished.",
}
BACKOFF = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(hours=1), timedelta(hours=6))
TIMEOUT_SECONDS = 10
KEPT_RESPONSE = 2000


def emit(event: str, data: dict) -> list[int]:
    """Record ``event`` for every active endpoint subscribed to it and queue its delivery; commits.

    Returns the delivery ids (none when no endpoint wants the event).
    """
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    wanted = [
        e
        for e in db.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.active.is_(True)))
        if event in (e.events or [])
    ]
    if not wanted:
        return []
    now = datetime.now(timezone.utc)
    event_id = str(uuid.uuid4())
    payload = {"id": event_id, "type": event, "created_at": now.isoformat(), "data": data}
    rows = [
        WebhookDelivery(endpoint_id=e.id, event=event, event_id=event_id, payload=payload, created_at=now)
        for e in wanted
    ]
    db.session.add_all(rows)
    db.session.commit()
    ids = [row.id for row in rows]
    for delivery_id in ids:
        jobs.enqueue(JOB, f"Webhook {event} #{delivery_id}", None, delivery_id=delivery_id)
    return ids


def notify(events: list[tuple[str, dict]]) -> int:
    """``emit`` each (event, data); a failure is logged, never raised (the change itself is committed)."""
    sent = 0
    for event, data in events:
        try:
            sent += len(emit(event, data))
        except Exception:
            db.session.rollback()
            log.exception("could not record webhook event %s", event)
    return sent


def _post(url: str, body: bytes, signature: str) -> tuple[int | None, str, str | None]:
    """(status code or None, start of the answer, error) for one POST."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", HEADER: signature, "User-Agent": "Loyalist-Webhooks/1"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 (http/https only, checked at registration)
            return response.status, response.read(KEPT_RESPONSE).decode("utf-8", "replace"), None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(KEPT_RESPONSE).decode("utf-8", "replace"), None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return None, "", str(getattr(exc, "reason", exc))[:300]


@jobs.job(JOB)
def deliver_job(progress=None, delivery_id: int = 0) -> dict:
    """Send one delivery (an attempt); on failure schedule the next one with backoff."""
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status in ("delivered", "failed"):
        return {"skipped": True}
    endpoint = db.session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None or not endpoint.active:
        delivery.status, delivery.last_error = "failed", "endpoint deactivated"
        db.session.commit()
        return {"status": delivery.status}
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    status, text, error = _post(endpoint.url, body, sign(endpoint.secret, body))
    now = datetime.now(timezone.utc)
    delivery.attempts += 1
    delivery.last_status_code, delivery.last_response, delivery.last_error = status, text, error
    if status is not None and 200 <= status < 300:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", now, None
        db.session.commit()
        return {"status": "delivered", "attempts": delivery.attempts}
    if delivery.attempts > len(BACKOFF):
        delivery.status, delivery.next_attempt_at = "failed", None
        db.session.commit()
        return {"status": "failed", "attempts": delivery.attempts}
    delivery.status = "retrying"
    delivery.next_attempt_at = now + BACKOFF[delivery.attempts - 1]
    db.session.commit()
    jobs.schedule_at(
        delivery.next_attempt_at, JOB, f"Webhook {delivery.event} #{delivery.id} (retry)", None, delivery_id=delivery.id
    )
    return {"status": "retrying", "attempts": delivery.attempts}


def recent_deliveries(limit: int = 200) -> list[tuple[WebhookDelivery, WebhookEndpoint]]:
    """The latest deliveries with their endpoints, newest first, for the admin page."""
    rows = db.session.execute(
        select(WebhookDelivery, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return [(d, e) for d, e in rows]
