"""The message-template library: a ready text per purpose (win-back, tier-up, bundle…), editable by admins.

Where texts live: the defaults are here in code (reviewed with the code, present on any database, even
an empty one); the ``message_templates`` table holds only what admins changed, as a chain-wide version
(no store) and per-store versions. A store reads its own version, else the chain's, else the default;
"reset" deletes a version, so the next one down shows again. Every change is validated like a campaign's
template (known placeholders only) and audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from portal.extensions import db
from portal.models import MessageTemplate, Store
from portal.services import audit
from portal.services.campaigns.messages import CampaignError, render_body, validate_template
from portal.services.clock import aware, zone
from portal.sms_text import segment_info

MAX_LENGTH = 1000


@dataclass(frozen=True)
class Purpose:
    """One kind of offer: its label, when to use it, and the default text."""

    key: str
    label: str
    use: str
    default: str


PURPOSES: dict[str, Purpose] = {
    p.key: p
    for p in (
        Purpose(
            "win_back",
            "Win-back",
            "Lapsing and at-risk customers: a real reason to come back.",
            "Hi {first_name}, we miss you at {store}! Enjoy 20% off your next visit with code {code}, "
            "valid until {expires}.",
        ),
        Purpose(
            "nudge",
            "Gentle nudge",
            "Customers a little quieter than usual: a reminder, a small incentive.",
            "Hi {first_name}, it has been a while! Drop by {store} this week and save 10% with code {code} "
            "(until {expires}).",
        ),
        Purpose(
            "tier_up",
            "Tier-up",
            "Customers close to the next tier: say how close, reward the next visit.",
            "Hi {first_name}, you are close to your next reward at {store}. Shop before {expires} with "
            "code {code} for double points.",
        ),
        Purpose(
            "bundle",
            "Bundle offer",
            "Pair a slow-moving item with what people buy with it (see Bundles).",
            "Hi {first_name}, a bundle deal at {store}: buy the pair and save 15% with code {code}. Ends {expires}.",
        ),
        Purpose(
            "welcome",
            "Welcome",
            "New customers after their first purchase: invite a second visit.",
            "Welcome to {store}, {first_name}! Your second visit is 10% off with code {code}, valid until {expires}.",
        ),
    )
}


class TemplateError(CampaignError):
    """A template that cannot be saved; the message is for the user."""


@dataclass
class LibraryEntry:
    """A purpose's text as a store reads it, and where that text comes from."""

    purpose: str
    label: str
    use: str
    body: str
    source: str  # "default" | "chain" | "store"
    updated_by: str | None = None
    updated_at: datetime | None = None
    stats: dict | None = None


def purpose_or_error(key: str | None) -> Purpose:
    """The purpose named ``key``; TemplateError naming the known ones otherwise."""
    purpose = PURPOSES.get((key or "").strip())
    if purpose is None:
        raise TemplateError(
            f"There is no message template “{(key or '').strip()[:40]}”; choose one of "
            + ", ".join(p.label for p in PURPOSES.values())
            + "."
        )
    return purpose


def _rows(store_id: int | None) -> dict[tuple[str, int | None], MessageTemplate]:
    query = select(MessageTemplate).where(
        MessageTemplate.store_id.is_(None)
        if store_id is None
        else (MessageTemplate.store_id.is_(None)) | (MessageTemplate.store_id == store_id)
    )
    return {(r.purpose, r.store_id): r for r in db.session.scalars(query)}


def library(store_id: int | None = None, with_stats: bool = False) -> list[LibraryEntry]:
    """Every purpose's text for ``store_id`` (None: the chain-wide texts), in the library's order."""
    rows = _rows(store_id)
    store = db.session.get(Store, store_id) if store_id is not None else None
    out = []
    for purpose in PURPOSES.values():
        row = rows.get((purpose.key, store_id)) if store_id is not None else None
        source = "store"
        if row is None:
            row, source = rows.get((purpose.key, None)), "chain"
        body = row.body if row is not None else purpose.default
        entry = LibraryEntry(
            purpose=purpose.key,
            label=purpose.label,
            use=purpose.use,
            body=body,
            source=source if row is not None else "default",
            updated_by=row.updated_by if row is not None else None,
            updated_at=aware(row.updated_at) if row is not None else None,
        )
        if with_stats:
            entry.stats = text_stats(body, store)
        out.append(entry)
    return out


def template_for(purpose: str, store_id: int | None = None) -> str:
    """The text of ``purpose`` as ``store_id`` reads it (its own, else the chain's, else the default)."""
    key = purpose_or_error(purpose).key
    for entry in library(store_id):
        if entry.purpose == key:
            return entry.body
    raise AssertionError("unreachable")


def text_stats(body: str, store: Store | None = None) -> dict:
    """Encoding, characters and segments of ``body`` as sent: long sample values, sender and opt-out added.

    The sample recipient has a long first name and the longest code, so a text that fits here fits
    every recipient of the same store.
    """
    local = (datetime.now(timezone.utc) + timedelta(days=30)).astimezone(zone(store.timezone if store else "UTC"))
    values = {
        "first_name": "Christopher",
        "tier": "Platinum",
        "reward": "",
        "code": "X" * 10,
        "store": store.name if store else "Downtown",
        "expires": f"{local:%b} {local.day}",
    }
    sender = (store.sender_name or store.name) if store else "Downtown"
    info = segment_info(render_body(body, values, sender))
    return {"encoding": info.encoding, "characters": info.characters, "segments": info.segments}


def _check_body(body: str) -> str:
    body = (body or "").strip()
    validate_template(body)
    if len(body) > MAX_LENGTH:
        raise TemplateError(f"A template holds at most {MAX_LENGTH:,} characters ({len(body):,} given).")
    return body


def save(purpose: str, body: str, store_id: int | None, user_email: str) -> MessageTemplate:
    """Store an admin's version of ``purpose`` for ``store_id`` (None: every store); audited, committed.

    Raises TemplateError (or CampaignError for an unknown placeholder) with the reason.
    """
    key = purpose_or_error(purpose).key
    body = _check_body(body)
    if store_id is not None and db.session.get(Store, store_id) is None:
        raise TemplateError("That store does not exist.")
    row = db.session.scalar(
        select(MessageTemplate).where(
            MessageTemplate.purpose == key,
            MessageTemplate.store_id.is_(None) if store_id is None else MessageTemplate.store_id == store_id,
        )
    )
    before = row.body if row is not None else template_for(key, store_id)
    if row is None:
        row = MessageTemplate(purpose=key, store_id=store_id, body=body)
        db.session.add(row)
    row.body, row.updated_by, row.updated_at = body, user_email, datetime.now(timezone.utc)
    audit.record(
        "template.change",
        f"template:{key}" + (f"@store:{store_id}" if store_id is not None else ""),
        {"before": before, "after": body},
        user_email,
    )
    db.session.commit()
    return row


def reset(purpose: str, store_id: int | None, user_email: str) -> bool:
    """Delete the version of ``purpose`` for ``store_id``, so the chain's (or the default) applies; audited.

    Returns False when there was nothing to reset.
    """
    key = purpose_or_error(purpose).key
    row = db.session.scalar(
        select(MessageTemplate).where(
            MessageTemplate.purpose == key,
            MessageTemplate.store_id.is_(None) if store_id is None else MessageTemplate.store_id == store_id,
        )
    )
    if row is None:
        return False
    audit.record(
        "template.reset",
        f"template:{key}" + (f"@store:{store_id}" if store_id is not None else ""),
        {"before": row.body},
        user_email,
    )
    db.session.delete(row)
    db.session.commit()
    return True
