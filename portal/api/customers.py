"""/api/v1/customers: the customer list (the list page's filters and keyset pages), one customer, upsert,
consent and erasure, all through the same scoped services as the customer pages."""

from __future__ import annotations

from flask.views import MethodView
from sqlalchemy.orm import selectinload

from portal.api import schemas
from portal.api.common import abort_with, api_user, list_page, make_blueprint
from portal.models import Customer
from portal.services import settings as settings_service
from portal.services import webhooks_out
from portal.services.customers import customers as customer_service
from portal.services.customers import privacy, upsert
from portal.services.scores import tiers as tier_service

STORE = (selectinload(Customer.store),)  # each item names its store: one query per page, not one per row
blp = make_blueprint("api_customers", "/customers", "Customers: features, tier, churn, CLV, consent.")


def _visible(customer_id: int):
    customer = customer_service.get_for_user(customer_id, api_user())
    if customer is None or customer.erased_at is not None:
        abort_with(404)
    return customer


def detail(customer) -> dict:
    """The customer page's picture of one customer, as data."""
    values = settings_service.all_values()
    return {
        **{k: getattr(customer, k) for k in schemas.CustomerSchema().fields if k != "store"},
        "store": customer.store.name if customer.store else None,
        "features": {k: getattr(customer, k) for k in schemas.FeaturesSchema().fields},
        "tier_info": {
            "tier": customer.tier,
            "reward": values.get(f"reward.{customer.tier}") if customer.tier else None,
            "progress": tier_service.progress_message(customer, values),
        },
        "churn": {
            "probability": customer.churn_probability,
            "band": customer.churn_band,
            "reasons": customer.churn_reasons,
            "action": values.get(f"churn.action.{customer.churn_band}") if customer.churn_band else None,
        },
        "value": {
            "p_alive": customer.p_alive,
            "expected_purchases_90d": customer.expected_purchases_90d,
            "clv_12m": customer.clv_12m,
        },
        "lifecycle_detail": {
            "status": customer.lifecycle,
            "meaning": customer_service.LIFECYCLE_MEANING.get(customer.lifecycle or ""),
        },
        "consent": {
            "status": customer.sms_consent,
            "at": customer.sms_consent_at,
            "source": customer.sms_consent_source,
        },
        "erased": customer.erased_at is not None,
    }


def _opt_out_event(customer, before: str) -> None:
    """Tell the webhooks when this request opted the customer out."""
    if customer.sms_consent == "opted_out" and before != "opted_out":
        webhooks_out.notify(
            [("customer.opted_out", {"customer_id": customer.id, "external_id": customer.external_id, "source": "api"})]
        )


@blp.route("")
class Customers(MethodView):
    @blp.arguments(schemas.CustomerListArgs, location="query", unknown="raise")
    @blp.response(200, schemas.CustomerPageSchema)
    def get(self, args):
        """The customers your token's user sees, filtered like the customer list page.

        Filters: `q`, `store`, `tier`, `band`, `lifecycle`, `consent`, `min_recency`, `max_recency`,
        `days_since_sms`; `sort`. Pages: pass `next_after` back as `after`.
        """
        after, limit = args.pop("after", None), args.pop("limit", None)
        params = {k: str(v) for k, v in args.items() if v is not None}
        items, nxt = list_page("customers", params, api_user(), after, limit, STORE)
        return {"items": items, "next_after": nxt}

    @blp.arguments(schemas.CustomerUpsertSchema)
    @blp.response(200, schemas.UpsertResultSchema)
    @blp.alt_response(201, schema=schemas.UpsertResultSchema, description="Created")
    def post(self, data):
        """Create or update a customer by `external_id` (admins and managers), with consent and its source/date.

        A manager creates customers of their own store and cannot change another store's customer (409).
        """
        try:
            customer, created, consent_before = upsert.upsert(data, api_user())
        except upsert.UpsertRefused as exc:
            abort_with(exc.status, exc.message, exc.errors)
        _opt_out_event(customer, consent_before)
        return {"created": created, "customer": detail(customer)}, 201 if created else 200


@blp.route("/<int:customer_id>")
class CustomerById(MethodView):
    @blp.response(200, schemas.CustomerDetailSchema)
    def get(self, customer_id):
        """One customer: features, tier and progress, lifecycle, churn with reasons, CLV, consent."""
        return detail(_visible(customer_id))

    @blp.response(200, schemas.ErasedSchema)
    def delete(self, customer_id):
        """Erase the customer's personal data (admins only), exactly as the customer page does.

        Name, phone, e-mail and the store's customer id are removed; purchases and the consent record stay.
        """
        if api_user().role != "admin":
            abort_with(403, "Only admins erase customers.")
        customer = _visible(customer_id)
        try:
            cancelled = privacy.erase_customer(customer, api_user().email)
        except privacy.ErasureError as exc:
            abort_with(409, str(exc))
        return {"id": customer.id, "erased": True, "outbox_cancelled": cancelled}


@blp.route("/<int:customer_id>/consent")
class CustomerConsent(MethodView):
    @blp.arguments(schemas.ConsentInSchema)
    @blp.response(200, schemas.CustomerDetailSchema)
    def post(self, data, customer_id):
        """Record SMS consent: `opted_in` needs its source (and date); `opted_out` always wins."""
        customer = _visible(customer_id)
        before = customer.sms_consent
        try:
            upsert.record_consent(customer, data, api_user())
        except upsert.UpsertRefused as exc:
            abort_with(exc.status, exc.message, exc.errors)
        _opt_out_event(customer, before)
        return detail(customer)
