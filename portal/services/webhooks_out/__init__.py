"""Outgoing webhooks: admins register URLs for events; each delivery is signed, retried, and logged.

``signing`` computes the ``Loyalist-Signature`` header; ``endpoints`` registers URLs; ``delivery``
records events (``emit``, ``notify``; a full rescore's moves grouped: ``notify_rescore``) and sends them
through the jobs system (``webhooks.deliver``), retrying with backoff. ``subscribed`` is the cheap check
callers make before computing events. docs/api.md describes the format, which path emits which event,
and has a receiver example.
"""

from portal.services.webhooks_out.delivery import (
    EVENTS,
    RESCORE_EVENTS,
    deliver_job,
    emit,
    emit_many,
    notify,
    notify_rescore,
    recent_deliveries,
    subscribed,
)
from portal.services.webhooks_out.endpoints import EndpointError, create, deactivate, endpoints
from portal.services.webhooks_out.signing import HEADER, sign, verify

__all__ = [
    "EVENTS",
    "HEADER",
    "RESCORE_EVENTS",
    "EndpointError",
    "create",
    "deactivate",
    "deliver_job",
    "emit",
    "emit_many",
    "endpoints",
    "notify",
    "notify_rescore",
    "recent_deliveries",
    "sign",
    "subscribed",
    "verify",
]
