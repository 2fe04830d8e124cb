"""Coupon redemption: a campaign's code counts once, before expiry, for its own customer and store.

Why it works this way: docs/design-notes.md#coupon-redemption.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import select, update

from portal.extensions import db
from portal.models import Campaign, Customer, OutboxMessage, PurchaseLine, Store
from portal.services import audit, webhooks_out
from portal.services.campaigns.test_send import is_test_code
from portal.services.clock import aware, zone

#: Outbox statuses whose message may have reached the customer (so the code can be in their hands).
REDEEMABLE = ("sent", "delivered", "dry-run", "unknown")
#: Why an imported line carrying a code did not redeem it, in the order the rules are checked.
REFUSALS = {
    "unknown_code": "no campaign sent this code",
    "not_sent": "the code's message was never sent",
    "other_customer": "the purchase is not by the customer the code was sent to",
    "other_store": "the purchase is at another store than the customer's",
    "before_send": "the purchase is earlier than the message",
    "expired": "the offer had expired",
    "already_redeemed": "the code was already redeemed",
}
_NOT_CODE = re.compile(r"[\s\-_.]+")
_CHUNK = 500


class RedemptionError(ValueError):
    """A code that cannot be redeemed; the message is for the user."""


def normalise_code(text: str | None) -> str:
    """A typed or imported code as stored: upper case, without spaces, dashes, dots or underscores."""
    return _NOT_CODE.sub("", text or "").upper()


@dataclass
class _Offer:
    """One outbox row with what the rules need (loaded once per code)."""

    row_id: int
    campaign_id: int
    customer_id: int
    status: str
    sent_at: datetime | None
    redeemed_at: datetime | None
    redeemed_by: str | None
    expires_at: datetime | None
    store_id: int | None  # the customer's store (else the campaign's); None: any store


def _offers(codes: Iterable[str]) -> dict[str, _Offer]:
    codes = sorted(set(codes))
    found: dict[str, _Offer] = {}
    for i in range(0, len(codes), _CHUNK):
        query = (
            select(
                OutboxMessage.coupon_code,
                OutboxMessage.id,
                OutboxMessage.campaign_id,
                OutboxMessage.customer_id,
                OutboxMessage.status,
                OutboxMessage.sent_at,
                OutboxMessage.claimed_at,
                OutboxMessage.redeemed_at,
                OutboxMessage.redeemed_by,
                Campaign.expires_at,
                Campaign.created_at,
                Customer.store_id,
                Campaign.store_id,
            )
            .join(Campaign, Campaign.id == OutboxMessage.campaign_id)
            .join(Customer, Customer.id == OutboxMessage.customer_id)
            .where(OutboxMessage.coupon_code.in_(codes[i : i + _CHUNK]))
        )
        for (
            code,
            row_id,
            campaign_id,
            customer_id,
            status,
            sent_at,
            claimed_at,
            redeemed_at,
            redeemed_by,
            expires_at,
            created_at,
            customer_store,
            campaign_store,
        ) in db.session.execute(query):
            found[code] = _Offer(
                row_id,
                campaign_id,
                customer_id,
                status,
                aware(sent_at or claimed_at or created_at),
                aware(redeemed_at),
                redeemed_by,
                aware(expires_at),
                customer_store if customer_store is not None else campaign_store,
            )
    return found


def _refusal(
    offer: _Offer | None, customer_id: int | None, store_id: int | None, at: datetime, check_store: bool = True
) -> str | None:
    """The first rule a redemption at ``at`` breaks (a REFUSALS key), or None when it may redeem."""
    if offer is None:
        return "unknown_code"
    if offer.status not in REDEEMABLE:
        return "not_sent"
    if customer_id != offer.customer_id:
        return "other_customer"
    if check_store and offer.store_id is not None and store_id is not None and store_id != offer.store_id:
        return "other_store"
    # Till clocks often keep minutes only: a purchase in the minute of the send counts as after it.
    if offer.sent_at is not None and at < offer.sent_at.replace(second=0, microsecond=0):
        return "before_send"
    if offer.expires_at is not None and at > offer.expires_at:
        return "expired"
    if offer.redeemed_at is not None:
        return "already_redeemed"
    return None


def _mark(offer: _Offer, at: datetime, by: str) -> bool:
    """Compare-and-set: record the redemption unless someone else did first (caller commits)."""
    result = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == offer.row_id, OutboxMessage.redeemed_at.is_(None))
        .values(redeemed_at=at, redeemed_by=by[:254]),
        execution_options={"synchronize_session": False},
    )
    return result.rowcount == 1


# --- staff -----------------------------------------------------------------------------------


def redeem_by_staff(
    code: str,
    customer: Customer,
    user_email: str | None,
    user_store_id: int | None = None,
    now: datetime | None = None,
    channel: str = "staff",
) -> OutboxMessage:
    """Redeem ``code`` for ``customer`` at the till (customer page); audited, commits.

    Args:
        user_store_id: the staff member's store (None for admins, who may redeem for any store);
            a manager redeems only for customers of their own store.
        channel: who redeemed it, as the ``coupon.redeemed`` webhook's ``by`` says ("staff": the
            customer page, "api": a till through the API).
    Raises:
        RedemptionError: the code is unknown, not this customer's, not sent, expired, already
            redeemed, or of another store. Refusals are audited too.
    """
    now = now or datetime.now(timezone.utc)
    normal = normalise_code(code)
    if not normal:
        raise RedemptionError("Type the coupon code from the customer's message.")
    if is_test_code(normal):
        raise RedemptionError("This is a TEST coupon from a test send: it is never redeemable.")
    offer = _offers([normal]).get(normal)
    store_id = user_store_id if user_store_id is not None else (offer.store_id if offer else None)
    reason = _refusal(offer, customer.id, store_id, now)
    by = f"staff:{user_email or 'unknown'}"
    if reason is None and not _mark(offer, now, by):
        db.session.rollback()
        offer = _offers([normal]).get(normal)
        reason = "already_redeemed"
    if reason is not None:
        db.session.rollback()
        audit.record(
            "coupon.redeem_refused",
            f"customer:{customer.external_id}",
            {"code": normal, "reason": reason, "source": "staff"},
            user_email,
        )
        db.session.commit()
        raise RedemptionError(_staff_message(reason, normal, offer))
    audit.record(
        "coupon.redeem",
        f"campaign:{offer.campaign_id}",
        {"code": normal, "customer": customer.external_id, "source": "staff", "at": now.isoformat()},
        user_email,
    )
    db.session.commit()
    row = db.session.get(OutboxMessage, offer.row_id)
    _announce([(row.coupon_code, row.campaign_id, row.customer_id, row.redeemed_at)], channel)
    _numbers_changed([row.campaign_id])
    return row


def _numbers_changed(campaign_ids) -> None:
    """The campaigns' stored numbers count redemptions: ask for their refresh (never raises)."""
    from portal.services.summaries import campaigns as campaign_summaries

    campaign_summaries.changed(campaign_ids)


def _announce(redeemed: list[tuple], by: str, import_id: int | None = None) -> None:
    """The outgoing webhook ``coupon.redeemed`` for each (code, campaign id, customer id, redeemed at); never raises."""
    try:
        if not redeemed or not webhooks_out.subscribed(["coupon.redeemed"]):
            return
        ids = sorted({customer_id for _, _, customer_id, _ in redeemed})
        external = {}
        for i in range(0, len(ids), _CHUNK):
            external.update(
                db.session.execute(
                    select(Customer.id, Customer.external_id).where(Customer.id.in_(ids[i : i + _CHUNK]))
                ).all()
            )
    except Exception:
        db.session.rollback()
        return
    events = []
    for code, campaign_id, customer_id, at in redeemed:
        data = {
            "code": code,
            "campaign_id": campaign_id,
            "customer_id": customer_id,
            "external_id": external.get(customer_id),
            "redeemed_at": aware(at).isoformat(),
            "by": by,
        }
        if by == "import":
            data["import_id"] = import_id  # None for lines added without an import run
        events.append(("coupon.redeemed", data))
    webhooks_out.notify(events)


def _staff_message(reason: str, code: str, offer: _Offer | None) -> str:
    if reason == "unknown_code":
        return f"No campaign sent the code {code}. Check it against the customer's message."
    if reason == "other_customer":
        return f"The code {code} was sent to another customer; it is valid only for them."
    if reason == "not_sent":
        return (
            f"The message with code {code} was never sent ({offer.status.replace('_', ' ')}), so it cannot be redeemed."
        )
    if reason == "other_store":
        name = db.session.scalar(select(Store.name).where(Store.id == offer.store_id)) if offer else None
        return f"The code {code} can only be redeemed at {name or 'the customer’s store'}."
    if reason == "expired":
        return f"The offer with code {code} expired on {offer.expires_at:%Y-%m-%d %H:%M} UTC."
    if reason == "already_redeemed":
        when = f" on {offer.redeemed_at:%Y-%m-%d %H:%M} UTC" if offer and offer.redeemed_at else ""
        return f"The code {code} was already redeemed{when}; a code redeems once."
    return f"The code {code} cannot be redeemed ({REFUSALS.get(reason, reason)})."


def open_coupons(customer_id: int, now: datetime | None = None) -> list[dict]:
    """The customer's codes that can still be redeemed (sent, not redeemed, not expired), newest first."""
    now = now or datetime.now(timezone.utc)
    rows = db.session.execute(
        select(OutboxMessage.coupon_code, Campaign.name, Campaign.expires_at, OutboxMessage.sent_at)
        .join(Campaign, Campaign.id == OutboxMessage.campaign_id)
        .where(
            OutboxMessage.customer_id == customer_id,
            OutboxMessage.coupon_code.is_not(None),
            OutboxMessage.redeemed_at.is_(None),
            OutboxMessage.status.in_(REDEEMABLE),
        )
        .order_by(OutboxMessage.id.desc())
    )
    return [
        {"code": code, "campaign": name, "expires_at": aware(expires), "sent_at": aware(sent)}
        for code, name, expires, sent in rows
        if expires is None or aware(expires) >= now
    ]


# --- imports ---------------------------------------------------------------------------------


@dataclass
class ImportRedemptions:
    """What matching imported coupon codes did: codes redeemed and lines refused, by reason."""

    redeemed: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    codes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the import's result page, e.g. "3 coupons redeemed; 1 refused: expired"."""
        text = f"{self.redeemed} coupon{'s' if self.redeemed != 1 else ''} redeemed"
        if self.refused:
            text += "; not redeemed: " + ", ".join(f"{n} {REFUSALS[k]}" for k, n in self.refused.items())
        return text


def redeem_from_imports(import_id: int | None = None, user_email: str | None = None) -> ImportRedemptions:
    """Match imported purchase lines that carry a coupon code to the codes campaigns sent; commits.

    Args:
        import_id: only the lines of this import (the importer's call); None: every line with a
            code (a catch-up run; rows already redeemed are left alone, so re-running is safe).
    Returns:
        ImportRedemptions with the codes redeemed and, per rule, the transactions refused.
    """
    query = (
        select(
            PurchaseLine.transaction_ref,
            PurchaseLine.customer_id,
            PurchaseLine.store_id,
            PurchaseLine.purchased_at,
            PurchaseLine.coupon_code,
            PurchaseLine.import_id,
        )
        .where(PurchaseLine.coupon_code.is_not(None), PurchaseLine.coupon_code != "")
        .order_by(PurchaseLine.purchased_at, PurchaseLine.id)
    )
    if import_id is not None:
        query = query.where(PurchaseLine.import_id == import_id)
    zones = {sid: zone(tz) for sid, tz in db.session.execute(select(Store.id, Store.timezone))}
    seen: set[tuple[str, str]] = set()
    transactions = []  # (code, ref, customer, store, UTC time, import id), earliest first
    for ref, customer_id, store_id, purchased_at, raw, line_import in db.session.execute(query):
        code = normalise_code(raw)
        if not code or (code, ref) in seen:
            continue  # several lines of one transaction carrying the code are one redemption
        seen.add((code, ref))
        at = purchased_at.replace(tzinfo=zones.get(store_id, timezone.utc)).astimezone(timezone.utc)
        transactions.append((code, ref, customer_id, store_id, at, line_import))
    result = ImportRedemptions()
    if not transactions:
        return result
    offers = _offers(code for code, *_ in transactions)
    refused: Counter[str] = Counter()
    redeemed = []  # (code, campaign, customer, at, import) for the webhooks
    for code, ref, customer_id, store_id, at, line_import in transactions:
        offer = offers.get(code)
        by = f"import:{line_import}:{ref}"
        if offer is not None and offer.redeemed_by == by[:254]:
            continue  # this transaction redeemed it on an earlier run
        reason = _refusal(offer, customer_id, store_id, at)
        if reason is None and not _mark(offer, at, by):
            reason = "already_redeemed"
        if reason is not None:
            refused[reason] += 1
            continue
        offer.redeemed_at, offer.redeemed_by = at, by[:254]
        result.redeemed += 1
        result.codes.append(code)
        redeemed.append((code, offer.campaign_id, offer.customer_id, at, line_import))
    result.refused = {k: refused[k] for k in REFUSALS if refused[k]}
    if result.redeemed or result.refused:
        audit.record(
            "coupon.redeem_import",
            f"import #{import_id}" if import_id is not None else "imports",
            {"redeemed": result.redeemed, "refused": result.refused, "codes": result.codes[:200]},
            user_email or "importer",
        )
    db.session.commit()
    by_import: dict = {}
    for code, campaign_id, customer_id, at, line_import in redeemed:
        by_import.setdefault(line_import, []).append((code, campaign_id, customer_id, at))
    for line_import, items in by_import.items():
        _announce(items, "import", import_id=line_import)
    if redeemed:
        _numbers_changed({campaign_id for _, campaign_id, *_ in redeemed})
    return result
