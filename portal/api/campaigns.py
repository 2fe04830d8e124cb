"""/api/v1/campaigns: the campaigns your token's user sees, and one campaign's measured results."""

from __future__ import annotations

import json

from flask.views import MethodView

from portal.api import schemas
from portal.api.common import abort_with, api_user, make_blueprint
from portal.models import Campaign
from portal.services.campaigns import campaigns as campaign_service
from portal.services.campaigns import results as results_service
from portal.services.lists import paging as keyset

blp = make_blueprint("api_campaigns", "/campaigns", "SMS campaigns and their results against the control group.")


@blp.route("")
class Campaigns(MethodView):
    @blp.arguments(schemas.PageArgs, location="query", unknown="raise")
    @blp.response(200, schemas.CampaignPageSchema)
    def get(self, args):
        """Campaigns of your store scope, newest first, in keyset pages."""
        try:
            cursor = keyset.parse_cursor(args.get("after"), Campaign.id, None)
        except keyset.BadCursor:
            abort_with(
                422, "The 'after' cursor is not one this list produced.", {"query": {"after": ["invalid cursor"]}}
            )
        items, nxt = keyset.fetch_keyset(
            campaign_service.visible_campaigns(api_user()), Campaign.id, None, True, args["limit"], cursor
        )
        return {"items": items, "next_after": json.dumps(nxt) if nxt else None}


def _difference(diff) -> dict | None:
    return None if diff is None else {"estimate": diff.estimate, "low": diff.low, "high": diff.high}


def _group(group) -> dict | None:
    if group is None:
        return None
    return {"n": group.n, "buyers": group.buyers, "revenue": group.revenue, "mean": group.mean, "rate": group.rate}


@blp.route("/<int:campaign_id>/results")
class CampaignResults(MethodView):
    @blp.response(200, schemas.CampaignResultsSchema)
    def get(self, campaign_id):
        """Delivery counts and the messaged-versus-control comparison (purchase rate, revenue, 95 % intervals)."""
        campaign = campaign_service.get_for_user(campaign_id, api_user())
        if campaign is None:
            abort_with(404)
        out = {"campaign": campaign, "status_counts": campaign_service.status_counts(campaign.id), "available": False}
        found = results_service.campaign_results(campaign)
        if found is not None:
            out.update(
                available=True,
                days=found.days,
                complete=found.complete,
                delivery=found.delivery,
                message=_group(found.message),
                control=_group(found.control),
                rate_difference=_difference(found.rate),
                revenue_difference=_difference(found.revenue),
                rate_text=found.rate_text,
                revenue_text=found.revenue_text,
            )
        return out
