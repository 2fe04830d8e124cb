"""Privacy: erasing a customer's personal data while keeping the statistics and the legal record.

Erasure removes what identifies the person (name, phone, e-mail, the store's own customer id) and
cancels messages not yet sent. Purchase lines stay linked to the now-anonymous row so spend, tiers
and models keep their totals; consent events stay as the record of what the customer agreed to.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

from sqlalchemy import update

from portal.extensions import db
from portal.models import Customer, OutboxMessage
from portal.services import audit
from portal.services.summaries import customers as customer_summaries

# Outbox rows no worker has claimed yet: cancelled on erasure. Claimed rows are left to the worker,
# which re-checks ``erased_at`` before sending (send_run.SendRun.still_allowed) and skips them.
UNSENT = ("pending",)
IN_FLIGHT = ("claimed", "sending", "in_doubt", "checking")


class ErasureError(ValueError):
    """An erasure that cannot be done; the message is for the user."""


def pseudonym() -> str:
    """A random external id for an erased customer: unlinkable to the old id, still unique."""
    return f"erased-{secrets.token_hex(8)}"


def erase_customer(customer: Customer, user_email: str | None = None, now: datetime | None = None) -> int:
    """Erase ``customer``'s personal data, cancel their unsent messages, audit it, and commit.

    Returns:
        The number of outbox rows cancelled.
    """
    if customer.erased_at is not None:
        raise ErasureError("This customer has already been erased.")
    now = now or datetime.now(timezone.utc)
    customer.name = None
    customer.phone = None
    customer.email = None
    customer.external_id = pseudonym()
    customer.erased_at = now
    cancelled = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.customer_id == customer.id, OutboxMessage.status.in_(UNSENT))
        .values(status="cancelled", claimed_by=None, next_attempt_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    # Finished rows keep their status for campaign statistics, but not the number or the greeting.
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.customer_id == customer.id, OutboxMessage.status.notin_(IN_FLIGHT))
        .values(phone=None, body=None)
        .execution_options(synchronize_session=False)
    )
    # The audit names the row by its database id only: no name, phone or old external id.
    audit.record(
        "customer.erase",
        target=f"customer:{customer.id}",
        detail={"outbox_cancelled": cancelled},
        user_email=user_email,
    )
    db.session.commit()
    customer_summaries.changed([customer.store_id])  # the store's stored counts no longer include them
    from portal.services.summaries import campaigns as campaign_summaries

    campaign_summaries.changed(customer_ids=[customer.id])  # their unsent messages were cancelled
    return cancelled
