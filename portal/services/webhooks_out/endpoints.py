"""Registering webhook endpoints (admins): URL, events, a secret shown once; audited."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from sqlalchemy import select

from portal.extensions import db
from portal.models import WebhookEndpoint
from portal.services import audit
from portal.services.webhooks_out.delivery import EVENTS


class EndpointError(ValueError):
    """An endpoint that cannot be registered; the message is for the form."""


def create(url: str, events: list[str], description: str, user) -> tuple[WebhookEndpoint, str]:
    """Register ``url`` for ``events``; commits. Returns (endpoint, its signing secret, shown once)."""
    if user.role != "admin":
        raise EndpointError("Only admins register webhooks.")
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 500:
        raise EndpointError("Give a full http:// or https:// URL (at most 500 characters).")
    unknown = sorted(set(events) - set(EVENTS))
    if unknown or not events:
        raise EndpointError(
            "Choose at least one event" + (f" (unknown: {', '.join(unknown)})" if unknown else "") + "."
        )
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(
        url=url, events=sorted(set(events)), secret=secret, description=(description or "")[:200], created_by=user.email
    )
    db.session.add(endpoint)
    db.session.flush()
    audit.record("webhook.create", f"webhook:{endpoint.id}", {"url": url, "events": endpoint.events}, user.email)
    db.session.commit()
    return endpoint, secret


def endpoints() -> list[WebhookEndpoint]:
    return list(db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id.desc())))


def deactivate(endpoint_id: int, user) -> WebhookEndpoint | None:
    """Stop sending to an endpoint (its log stays); None when there is no such endpoint; commits."""
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        return None
    endpoint.active = False
    audit.record("webhook.deactivate", f"webhook:{endpoint.id}", {"url": endpoint.url}, user.email)
    db.session.commit()
    return endpoint
