"""/api/v1/coupons/{code}/redeem: a till redeems a campaign's coupon with the customer page's checks."""

from __future__ import annotations

from flask.views import MethodView
from sqlalchemy import select

from portal.api import schemas
from portal.api.common import abort_with, api_user, make_blueprint
from portal.extensions import db
from portal.models import Customer
from portal.security import scope_to_user, user_store_id
from portal.services.campaigns import redemption
from portal.services.customers import customers as customer_service

blp = make_blueprint("api_coupons", "/coupons", "Coupon codes sent by campaigns.")


@blp.route("/<string:code>/redeem")
class Redeem(MethodView):
    @blp.arguments(schemas.RedeemInSchema)
    @blp.response(200, schemas.RedeemedSchema)
    def post(self, data, code):
        """Redeem `code` for a customer: once, before expiry, for the customer it was sent to, at their store.

        Refusals (unknown code, another customer's, not sent, expired, already redeemed, another store) are 409
        with the reason, and are audited like the page's.
        """
        user = api_user()
        if user.role not in ("admin", "manager"):
            abort_with(403, "Only admins and managers redeem coupons (as on the customer page).")
        if data.get("customer_id") is not None:
            customer = customer_service.get_for_user(data["customer_id"], user)
        else:
            query = select(Customer).where(Customer.external_id == data["external_id"])
            customer = db.session.scalar(scope_to_user(query, Customer.store_id, user))
        if customer is None or customer.erased_at is not None:
            abort_with(404, "No such customer (or your token's user has no access to them).")
        if len(code) > 100:
            abort_with(422, "The coupon code is too long.", {"path": {"code": ["longer than 100 characters"]}})
        try:
            # the service sends the coupon.redeemed webhook (by "api"), as for the page and imports
            row = redemption.redeem_by_staff(code, customer, f"api:{user.email}", user_store_id(user), channel="api")
        except redemption.RedemptionError as exc:
            abort_with(409, str(exc))
        return {
            "code": row.coupon_code,
            "campaign_id": row.campaign_id,
            "customer_id": row.customer_id,
            "redeemed_at": row.redeemed_at,
        }
