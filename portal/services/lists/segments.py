"""Saved segments: a named list filter reused for exports and as a campaign audience."""

from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy import false, select

from portal.extensions import db
from portal.models import SavedSegment
from portal.security import user_store_id
from portal.services import audit
from portal.services.lists import exports, registry


class SegmentError(ValueError):
    """A segment that cannot be saved or removed; the message is for the user."""


class SegmentNotFound(LookupError):
    """No such segment in the user's store scope (absent and another store's look the same: a 404)."""


def normalise_query(list_name: str, query: str) -> str:
    """Keep only the list's filter keys, its sort and the opted-out toggle (no paging, no format)."""
    definition = registry.get(list_name)
    params = registry.parse_filter(query)
    text = registry.filter_string(definition, params)
    if definition.customer_type and registry.truthy(params.get("include_opted_out", "")):
        text = "&".join(filter(None, [text, urlencode([("include_opted_out", "1")])]))
    return text


def create(name: str, list_name: str, query: str, user) -> SavedSegment:
    """Save ``user``'s segment under their store scope (the filter is validated by running its count once); commits.

    The scope is kept with the segment: a segment's name and filter are the owner's store's business.
    """
    owner_email = user.email
    name = (name or "").strip()
    if not name:
        raise SegmentError("Give the segment a name.")
    if len(name) > 120:
        raise SegmentError("A segment name has at most 120 characters.")
    try:
        text = normalise_query(list_name, query)
        exports.prepare(list_name, registry.parse_filter(text), None)
    except registry.ExportError as exc:
        raise SegmentError(str(exc)) from None
    duplicate = db.session.scalar(
        select(SavedSegment).where(SavedSegment.owner_email == owner_email, SavedSegment.name == name)
    )
    if duplicate is not None:
        raise SegmentError(f"You already have a segment named '{name}'.")
    segment = SavedSegment(
        name=name, list_name=list_name, query=text, owner_email=owner_email, store_id=user_store_id(user)
    )
    db.session.add(segment)
    audit.record("segment.create", name, {"list": list_name, "filter": text}, owner_email)
    db.session.commit()
    return segment


def sees_all_stores(user) -> bool:
    """Admins and store-less users other than managers (``scope_to_user``'s rule: a store-less manager sees none)."""
    return user_store_id(user) is None and user.role != "manager"


def scoped(query, user):
    """Limit a SavedSegment query to ``user``'s store scope: their store's segments; all for all-stores users."""
    if sees_all_stores(user):
        return query
    store_id = user_store_id(user)
    return query.where(SavedSegment.store_id == store_id) if store_id is not None else query.where(false())


def visible(user) -> list[SavedSegment]:
    """The segments of ``user``'s store scope, newest first (another store's segment names are its own business)."""
    return list(db.session.scalars(scoped(select(SavedSegment), user).order_by(SavedSegment.id.desc())))


def get(segment_id: int | None, user) -> SavedSegment | None:
    """A segment ``user`` may see; None when absent or another store's (callers answer 404 for both)."""
    if segment_id is None:
        return None
    return db.session.scalar(scoped(select(SavedSegment), user).where(SavedSegment.id == segment_id))


def _require_visible(segment: SavedSegment, user) -> None:
    if get(segment.id, user) is None:
        raise SegmentNotFound(segment.id)


def can_delete(segment: SavedSegment, user) -> bool:
    return user.role == "admin" or segment.owner_email == user.email


def delete(segment: SavedSegment, user) -> None:
    """Remove a segment: its owner or an admin only; commits."""
    _require_visible(segment, user)
    if not can_delete(segment, user):
        raise SegmentError("Only the segment's owner or an admin can delete it.")
    audit.record("segment.delete", segment.name, {"list": segment.list_name, "filter": segment.query}, user.email)
    db.session.delete(segment)
    db.session.commit()


def size(segment: SavedSegment, user) -> int:
    """How many rows the segment selects for ``user`` (their store scoping applies)."""
    _require_visible(segment, user)
    return exports.count(segment.list_name, registry.parse_filter(segment.query), user)


def audience(segment_id: int, user) -> tuple[str, str] | None:
    """(list name, filter query string) of a segment ``user`` may see, for a campaign's audience; None otherwise."""
    segment = get(segment_id, user)
    return None if segment is None else (segment.list_name, segment.query)
