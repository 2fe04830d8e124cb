"""/api/v1/segments: the saved segments your token's user sees, and their customers (keyset pages)."""

from __future__ import annotations

from flask.views import MethodView
from sqlalchemy.orm import selectinload

from portal.api import schemas
from portal.api.common import abort_with, api_user, list_page, make_blueprint
from portal.models import Customer
from portal.services.lists import registry, segments

STORE = (selectinload(Customer.store),)  # each item names its store: one query per page, not one per row
blp = make_blueprint("api_segments", "/segments", "Saved segments (a list and its filter).")


@blp.route("")
class Segments(MethodView):
    @blp.response(200, schemas.SegmentListSchema)
    def get(self):
        """The saved segments of your store scope, newest first."""
        return {"items": segments.visible(api_user())}


@blp.route("/<int:segment_id>/customers")
class SegmentCustomers(MethodView):
    @blp.arguments(schemas.PageArgs, location="query", unknown="raise")
    @blp.response(200, schemas.CustomerPageSchema)
    def get(self, args, segment_id):
        """The customers a customer segment selects now (its filter, your store scope), in keyset pages."""
        segment = segments.get(segment_id, api_user())
        if segment is None:
            abort_with(404)
        if segment.list_name not in ("customers", "at-risk"):
            abort_with(422, f"Segment {segment.id} is a '{segment.list_name}' list, not customers.")
        params = registry.parse_filter(segment.query)
        items, nxt = list_page(segment.list_name, params, api_user(), args.get("after"), args.get("limit"), STORE)
        return {"items": items, "next_after": nxt}
