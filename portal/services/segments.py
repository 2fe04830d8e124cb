"""Saved segments: a named list filter reused for exports and as a campaign audience."""
from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy import select

from portal.extensions import db
from portal.models import SavedSegment
from portal.services import audit, exports


class SegmentError(ValueError):
    """A segment that cannot be saved or removed; the message is for the user."""


def normalise_query(list_name: str, query: str) -> str:
    """Keep only the list's filter keys, its sort and the opted-out toggle (no paging, no format)."""
    definition = exports.get(list_name)
    params = exports.parse_filter(query)
    text = exports.filter_string(definition, params)
    if definition.customer_type and exports._truthy(params.get("include_opted_out", "")):
        text = "&".join(filter(None, [text, urlencode([("include_opted_out", "1")])]))
    return text


def create(name: str, list_name: str, query: str, owner_email: str) -> SavedSegment:
    """Save a segment (the filter is validated by running its count once); commits."""
    name = (name or "").strip()
    if not name:
        raise SegmentError("Give the segment a name.")
    if len(name) > 120:
        raise SegmentError("A segment name has at most 120 characters.")
    try:
        text = normalise_query(list_name, query)
        exports.prepare(list_name, exports.parse_filter(text), None)
    except exports.ExportError as exc:
        raise SegmentError(str(exc)) from None
    duplicate = db.session.scalar(select(SavedSegment).where(SavedSegment.owner_email == owner_email,
                                                             SavedSegment.name == name))
    if duplicate is not None:
        raise SegmentError(f"You already have a segment named '{name}'.")
    segment = SavedSegment(name=name, list_name=list_name, query=text, owner_email=owner_email)
    db.session.add(segment)
    audit.record("segment.create", name, {"list": list_name, "filter": text}, owner_email)
    db.session.commit()
    return segment


def visible(user) -> list[SavedSegment]:
    """Every saved segment, newest first (a segment is a filter: store scoping applies when used)."""
    return list(db.session.scalars(select(SavedSegment).order_by(SavedSegment.id.desc())))


def can_delete(segment: SavedSegment, user) -> bool:
    return user.role == "admin" or segment.owner_email == user.email


def delete(segment: SavedSegment, user) -> None:
    """Remove a segment: its owner or an admin only; commits."""
    if not can_delete(segment, user):
        raise SegmentError("Only the segment's owner or an admin can delete it.")
    audit.record("segment.delete", segment.name, {"list": segment.list_name, "filter": segment.query}, user.email)
    db.session.delete(segment)
    db.session.commit()


def size(segment: SavedSegment, user) -> int:
    """How many rows the segment selects for ``user`` (their store scoping applies)."""
    return exports.count(segment.list_name, exports.parse_filter(segment.query), user)


def audience(segment_id: int) -> tuple[str, str] | None:
    """(list name, filter query string) of a segment, for a campaign's audience; None if absent."""
    segment = db.session.get(SavedSegment, segment_id)
    return None if segment is None else (segment.list_name, segment.query)
