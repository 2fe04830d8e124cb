"""Events to deliveries: one row per (event, endpoint), sent by ``webhooks.deliver`` jobs with retries.

The rows of one ``emit_many`` are written with one INSERT; one job sends up to ``PER_JOB`` of them to
an endpoint, in order (a job each would keep the embedded runner, one job at a time, busy for hours
after a large import). A full rescore's moves go out grouped (``notify_rescore``).

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

from sqlalchemy import insert, select

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
    "import.finished": "An import (a file, or an API batch of purchases) finished: done, refused or failed.",
}
BACKOFF = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(hours=1), timedelta(hours=6))
TIMEOUT_SECONDS = 10
KEPT_RESPONSE = 2000
PER_JOB = 100  # deliveries to one endpoint sent by one job, in order (one job each would hold the runner)


def subscribed(events=None) -> set[str]:
    """The events (of ``events``, default all) that at least one active endpoint wants: one small query.

    Callers check this before computing what to send, so a store without webhooks pays nothing more.
    """
    wanted = set()
    for names in db.session.scalars(select(WebhookEndpoint.events).where(WebhookEndpoint.active.is_(True))):
        wanted.update(names or [])
    return wanted & set(EVENTS if events is None else events)


def emit(event: str, data: dict) -> list[int]:
    """Record ``event`` for every active endpoint subscribed to it and queue its delivery; commits.

    Returns the delivery ids (none when no endpoint wants the event).
    """
    return emit_many([(event, data)])


def emit_many(events: list[tuple[str, dict]]) -> list[int]:
    """Record each (event, data) for every active endpoint subscribed to it, in one INSERT, then queue
    ``webhooks.deliver`` jobs (one per endpoint and ``PER_JOB`` deliveries); commits.

    Returns the delivery ids, in order (none when no endpoint wants any of the events).
    """
    unknown = sorted({event for event, _ in events} - set(EVENTS))
    if unknown:
        raise ValueError(f"unknown webhook event {unknown[0]!r}")
    if not events:
        return []
    endpoints = list(db.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.active.is_(True))))
    now = datetime.now(timezone.utc)
    rows = []
    for event, data in events:
        wanted = [e for e in endpoints if event in (e.events or [])]
        if not wanted:
            continue
        event_id = str(uuid.uuid4())
        payload = {"id": event_id, "type": event, "created_at": now.isoformat(), "data": data}
        rows += [
            {"endpoint_id": e.id, "event": event, "event_id": event_id, "payload": payload, "created_at": now}
            for e in wanted
        ]
    if not rows:
        return []
    table = WebhookDelivery.__table__
    ids = list(
        db.session.scalars(
            insert(table).returning(table.c.id, sort_by_parameter_order=True),
            [{**row, "status": "pending", "attempts": 0} for row in rows],
        )
    )
    db.session.commit()
    per_endpoint: dict[int, list[tuple[int, str]]] = {}
    for delivery_id, row in zip(ids, rows):
        per_endpoint.setdefault(row["endpoint_id"], []).append((delivery_id, row["event"]))
    for batch in per_endpoint.values():
        for start in range(0, len(batch), PER_JOB):
            part = batch[start : start + PER_JOB]
            if len(part) == 1:
                jobs.enqueue(JOB, f"Webhook {part[0][1]} #{part[0][0]}", None, delivery_id=part[0][0])
            else:
                title = f"Webhooks #{part[0][0]}–#{part[-1][0]} ({len(part)} events)"
                jobs.enqueue(JOB, title, None, delivery_ids=[delivery_id for delivery_id, _ in part])
    return ids


def notify(events: list[tuple[str, dict]]) -> int:
    """``emit_many`` the (event, data) pairs; a failure is logged, never raised (the change itself is committed).

    Returns how many deliveries were queued.
    """
    if not events:
        return 0
    try:
        return len(emit_many(events))
    except Exception:
        db.session.rollback()
        log.exception("could not record webhook events %s", sorted({event for event, _ in events}))
        return 0


RESCORE_EVENTS = ("customer.tier_changed", "customer.high_risk", "customer.lost")
RESCORE_GROUP = 1000  # customers per delivery from a full rescore


def notify_rescore(transitions: list[tuple[str, dict]], reason: str, mode: str = "full") -> int:
    """A full rescore's moves, grouped: per event type, deliveries of up to ``RESCORE_GROUP`` customers.

    A full rescore can move tens of thousands of customers at once; one delivery (and one job, and
    one POST) per customer would keep the job runner busy for an hour. Each delivery's ``data`` is
    ``{"rescore": mode ("full", or "incremental" for a large pass of the API's rescore queue), "reason",
    "count", "part", "parts", "customers": [...]}``, every item the
    data of the single-customer event (docs/api.md). Never raises; returns the deliveries queued.
    """
    by_event: dict[str, list[dict]] = {}
    for event, data in transitions:
        by_event.setdefault(event, []).append(data)
    grouped = []
    for event, items in by_event.items():
        parts = (len(items) + RESCORE_GROUP - 1) // RESCORE_GROUP
        for part in range(parts):
            chunk = items[part * RESCORE_GROUP : (part + 1) * RESCORE_GROUP]
            grouped.append(
                (
                    event,
                    {
                        "rescore": mode,
                        "reason": reason,
                        "count": len(items),
                        "part": part + 1,
                        "parts": parts,
                        "customers": chunk,
                    },
                )
            )
    return notify(grouped)


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
def deliver_job(progress=None, delivery_id: int = 0, delivery_ids: list[int] | None = None) -> dict:
    """Send one delivery, or several to one endpoint in order (an attempt each); a failed one schedules
    its own next attempt with backoff.

    Once the endpoint gave no answer at all (timeout, refused), the rest of the list is not tried now:
    each is scheduled for the first backoff step without counting an attempt, so an endpoint that is
    down holds the job runner for one timeout, not one per event.
    """
    if not delivery_ids:
        return _deliver_one(delivery_id)
    outcomes: dict[str, int] = {}
    unreachable = False
    for i, one in enumerate(delivery_ids):
        result = _postpone(one) if unreachable else _deliver_one(one)
        key = result.get("status", "skipped")
        outcomes[key] = outcomes.get(key, 0) + 1
        unreachable = unreachable or result.get("unreachable", False)
        if progress is not None:
            progress((i + 1) / len(delivery_ids))
    return {"deliveries": outcomes}


def _postpone(delivery_id: int) -> dict:
    """Schedule a delivery for the first backoff step without an attempt (its endpoint just gave no answer)."""
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status in ("delivered", "failed"):
        return {"skipped": True}
    delivery.status = "retrying"
    delivery.next_attempt_at = datetime.now(timezone.utc) + BACKOFF[0]
    delivery.last_error = "not tried: the endpoint did not answer the delivery before it"
    db.session.commit()
    jobs.schedule_at(
        delivery.next_attempt_at, JOB, f"Webhook {delivery.event} #{delivery.id} (retry)", None, delivery_id=delivery.id
    )
    return {"status": "postponed"}


def _deliver_one(delivery_id: int) -> dict:
    """One attempt of one delivery; on failure schedule the next one with backoff."""
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
    return {"status": "retrying", "attempts": delivery.attempts, "unreachable": status is None}


def recent_deliveries(limit: int = 200) -> list[tuple[WebhookDelivery, WebhookEndpoint]]:
    """The latest deliveries with their endpoints, newest first, for the admin page."""
    rows = db.session.execute(
        select(WebhookDelivery, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return [(d, e) for d, e in rows]
