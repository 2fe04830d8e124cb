"""/api/v1/bundles: the active bundle suggestions (association rules), filtered like the bundles page."""

from __future__ import annotations

from flask.views import MethodView

from portal.api import schemas
from portal.api.common import api_user, list_page, make_blueprint

blp = make_blueprint("api_bundles", "/bundles", "Dead-stock bundle suggestions from association rules.")


@blp.route("")
class Bundles(MethodView):
    @blp.arguments(schemas.BundleArgs, location="query", unknown="raise")
    @blp.response(200, schemas.BundlePageSchema)
    def get(self, args):
        """The active model's rules: `q` (product names), `min_lift`, `min_confidence`, `min_support`."""
        after, limit = args.pop("after", None), args.pop("limit", None)
        params = {k: str(v) for k, v in args.items() if v is not None}
        items, nxt = list_page("bundles", params, api_user(), after, limit)
        return {"items": items, "next_after": nxt}
