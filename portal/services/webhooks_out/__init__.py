"""Outgoing webhooks: admins register URLs for events; each delivery is signed, retried, and logged.

``signing`` computes the ``Loyalist-Signature`` header; ``endpoints`` registers URLs; ``delivery``
records events (``emit``) and sends them through the jobs system (``webhooks.deliver``), retrying
with backoff. docs/api.md describes the format and has a receiver example.
"""

from portal.services.webhooks_out.delivery import EVENTS, deliver_job, emit, notify, recent_deliveries
from portal.services.webhooks_out.endpoints import EndpointError, create, deactivate, endpoints
from portal.services.webhooks_out.signing import HEADER, sign, verify

__all__ = [
    "EVENTS",
    "HEADER",
    "EndpointError",
    "create",
    "deactivate",
    "deliver_job",
    "emit",
    "endpoints",
    "notify",
    "recent_deliveries",
    "sign",
    "verify",
]
