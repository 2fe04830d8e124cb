"""Request and response schemas of the API (marshmallow); the OpenAPI document is generated from them."""

from __future__ import annotations

import math
from datetime import timezone

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from portal.models import CONSENT
from portal.services.customers.customers import LIFECYCLES

BANDS = ("High", "Medium", "Low")
MAX_PURCHASE_LINES = 5000


class Money(fields.Decimal):
    """Money as a decimal string ("12.50"): exact, unlike a JSON number."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {"type": "string", "format": "decimal", "example": "12.50", **kwargs["metadata"]}
        super().__init__(as_string=True, **kwargs)


class UtcDateTime(fields.DateTime):
    """A moment in UTC with its offset (SQLite hands timestamps back without one: they are UTC)."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return super()._serialize(value, attr, obj, **kwargs)


class WallTime(fields.DateTime):
    """A purchase time as the store's clock showed it (ISO 8601 without an offset, like the imported files)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {
            "format": "local-date-time",
            "description": "Store-local wall time (no offset).",
            **kwargs["metadata"],
        }
        super().__init__(**kwargs)


class StrictSchema(Schema):
    """Unknown fields are an error (a typo in a field name must not be ignored silently)."""

    class Meta:
        ordered = True


# --- lists -------------------------------------------------------------------------------------


class PageArgs(StrictSchema):
    after = fields.String(
        load_default=None,
        validate=validate.Length(max=500),
        metadata={"description": "The previous page's `next_after` (a keyset cursor)."},
    )
    limit = fields.Integer(
        load_default=50, validate=validate.Range(min=1, max=500), metadata={"description": "Items per page."}
    )


class CustomerListArgs(PageArgs):
    q = fields.String(validate=validate.Length(max=200), metadata={"description": "Id, name, phone or e-mail."})
    store = fields.String(validate=validate.Length(max=120), metadata={"description": "Store name or id."})
    tier = fields.String(validate=validate.Length(max=16), metadata={"description": "A tier, or `none`."})
    band = fields.String(validate=validate.OneOf(BANDS))
    lifecycle = fields.String(validate=validate.OneOf(LIFECYCLES))
    consent = fields.String(validate=validate.OneOf(CONSENT))
    min_recency = fields.Integer(validate=validate.Range(min=0, max=100000))
    max_recency = fields.Integer(validate=validate.Range(min=0, max=100000))
    days_since_sms = fields.Integer(validate=validate.Range(min=0, max=36500))
    sort = fields.String(
        validate=validate.OneOf(
            [
                p + k
                for k in (
                    "name",
                    "monetary",
                    "frequency",
                    "recency",
                    "churn_probability",
                    "clv_12m",
                    "last_purchase_at",
                )
                for p in ("", "-")
            ]
        ),
        metadata={"description": "A column, `-` first for descending."},
    )


class CustomerSchema(Schema):
    id = fields.Integer()
    external_id = fields.String()
    name = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    store_id = fields.Integer(allow_none=True)
    store = fields.Method("_store_name", allow_none=True, metadata={"description": "Home store name."})
    sms_consent = fields.String()
    tier = fields.String(allow_none=True)
    churn_band = fields.String(allow_none=True)
    churn_probability = fields.Float(allow_none=True)
    lifecycle = fields.String(allow_none=True)
    monetary = Money(allow_none=True)
    frequency = fields.Integer(allow_none=True)
    recency = fields.Integer(allow_none=True)
    clv_12m = Money(allow_none=True)
    last_purchase_at = WallTime(allow_none=True)
    scored_at = UtcDateTime(allow_none=True)

    def _store_name(self, obj):
        if isinstance(obj, dict):
            return obj.get("store")
        return obj.store.name if obj.store else None


class CustomerPageSchema(Schema):
    items = fields.List(fields.Nested(CustomerSchema))
    next_after = fields.String(allow_none=True, metadata={"description": "Pass as `after` for the next page."})


class FeaturesSchema(Schema):
    monetary = Money(allow_none=True)
    frequency = fields.Integer(allow_none=True)
    recency = fields.Integer(allow_none=True)
    total_quantity = fields.Float(allow_none=True)
    num_unique_products = fields.Integer(allow_none=True)
    avg_price_per_unit = fields.Float(allow_none=True)
    store_visit_frequency = fields.Integer(allow_none=True)
    active_days = fields.Integer(allow_none=True)
    avg_purchase_gap_days = fields.Float(allow_none=True)
    spend_12m = Money(allow_none=True)
    first_purchase_at = WallTime(allow_none=True)
    last_purchase_at = WallTime(allow_none=True)


class TierSchema(Schema):
    tier = fields.String(allow_none=True)
    reward = fields.String(allow_none=True)
    progress = fields.String(allow_none=True, metadata={"description": "How far to the next reward."})


class ChurnSchema(Schema):
    probability = fields.Float(allow_none=True)
    band = fields.String(allow_none=True)
    reasons = fields.List(fields.String(), allow_none=True)
    action = fields.String(allow_none=True)


class ValueSchema(Schema):
    p_alive = fields.Float(allow_none=True)
    expected_purchases_90d = fields.Float(allow_none=True)
    clv_12m = Money(allow_none=True)


class LifecycleSchema(Schema):
    status = fields.String(allow_none=True)
    meaning = fields.String(allow_none=True)


class ConsentStateSchema(Schema):
    status = fields.String()
    at = UtcDateTime(allow_none=True)
    source = fields.String(allow_none=True)


class CustomerDetailSchema(CustomerSchema):
    features = fields.Nested(FeaturesSchema)
    tier_info = fields.Nested(TierSchema, data_key="tier_detail")
    churn = fields.Nested(ChurnSchema)
    value = fields.Nested(ValueSchema)
    lifecycle_detail = fields.Nested(LifecycleSchema)
    consent = fields.Nested(ConsentStateSchema)
    erased = fields.Boolean()


class ConsentInSchema(StrictSchema):
    status = fields.String(required=True, validate=validate.OneOf(("opted_in", "opted_out")))
    source = fields.String(
        load_default="api",
        validate=validate.Length(min=1, max=40),
        metadata={"description": "Where the consent was given (e.g. 'signed form at the till')."},
    )
    effective_at = fields.AwareDateTime(
        load_default=None, default_timezone=None, metadata={"description": "When it was given (ISO 8601, with offset)."}
    )


class CustomerUpsertSchema(StrictSchema):
    external_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    phone = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    email = fields.Email(load_default=None, allow_none=True, validate=validate.Length(max=254))
    store = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=120),
        metadata={"description": "Home store name (admins)."},
    )
    consent = fields.Nested(ConsentInSchema, load_default=None, allow_none=True)


class UpsertResultSchema(Schema):
    created = fields.Boolean()
    customer = fields.Nested(CustomerDetailSchema)


class ErasedSchema(Schema):
    id = fields.Integer()
    erased = fields.Boolean()
    outbox_cancelled = fields.Integer()


# --- purchases ---------------------------------------------------------------------------------


class PurchaseLineSchema(StrictSchema):
    customer_id = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=200),
        metadata={"description": "External id; empty for an anonymous sale."},
    )
    transaction_id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    purchase_date = fields.String(
        required=True, validate=validate.Length(min=1, max=40), metadata={"description": "ISO 8601 store-local time."}
    )
    product_id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    product_name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=1000))
    quantity = fields.Float(required=True, allow_nan=False)
    price_per_unit = fields.Float(load_default=None, allow_none=True, allow_nan=False)
    total_amount = fields.Float(load_default=None, allow_none=True, allow_nan=False)
    phone = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    store = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=120))
    coupon_code = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=100))


LINE_TEXT = {  # field -> (required, maximum length)
    "customer_id": (False, 200),
    "transaction_id": (True, 200),
    "purchase_date": (True, 40),
    "product_id": (True, 200),
    "product_name": (False, 1000),
    "phone": (False, 40),
    "store": (False, 120),
    "coupon_code": (False, 100),
}
LINE_NUMBERS = {"quantity": True, "price_per_unit": False, "total_amount": False}


def check_line(line) -> tuple[dict, dict]:
    """One purchase line checked exactly as ``PurchaseLineSchema`` would, without its per-field overhead.

    Returns (the line with every field, None where absent; {field: [messages]}).
    """
    if not isinstance(line, dict):
        return {}, {"_schema": ["Invalid input type."]}
    errors: dict[str, list[str]] = {}
    out = {}
    for name, (required, limit) in LINE_TEXT.items():
        value = line.get(name)
        if value is None:
            if required:
                errors[name] = ["Missing data for required field." if name not in line else "Field may not be null."]
        elif not isinstance(value, str):
            errors[name] = ["Not a valid string."]
        elif len(value) > limit or (required and not value):
            errors[name] = [f"Length must be between {1 if required else 0} and {limit}."]
        out[name] = value
    for name, required in LINE_NUMBERS.items():
        value = line.get(name)
        if value is None:
            if required:
                errors[name] = ["Missing data for required field." if name not in line else "Field may not be null."]
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            errors[name] = ["Not a valid number."]
        else:
            try:
                value = float(value)
            except OverflowError:  # an integer beyond any float
                errors[name] = ["Number too large."]
            else:
                if not math.isfinite(value):
                    errors[name] = ["Special numeric values (nan or infinity) are not permitted."]
        out[name] = value
    for name in line:
        if name not in LINE_TEXT and name not in LINE_NUMBERS:
            errors[name] = ["Unknown field."]
    return out, errors


class PurchaseLines(fields.List):
    """``List(Nested(PurchaseLineSchema))`` in the document; loaded by ``check_line`` (a 5,000-line batch
    through marshmallow's per-field machinery costs more than the importer's checks of it)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("Not a valid list.")
        lines, errors = [], {}
        for index, raw in enumerate(value):
            line, problems = check_line(raw)
            if problems:
                errors[index] = problems
            lines.append(line)
        if errors:
            raise ValidationError(errors)
        return lines


class PurchaseBatchSchema(StrictSchema):
    lines = PurchaseLines(
        fields.Nested(PurchaseLineSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_PURCHASE_LINES),
        metadata={"description": f"1 to {MAX_PURCHASE_LINES:,} lines, all written or none."},
    )
    store = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=120),
        metadata={"description": "Default store of the lines."},
    )

    @validates_schema
    def _not_empty(self, data, **kwargs):
        if not data.get("lines"):
            raise ValidationError("Send at least one line.", "lines")


class PurchaseIdempotencyHeaders(Schema):
    idempotency_key = fields.String(
        required=True,
        data_key="Idempotency-Key",
        validate=validate.Length(min=1, max=200),
        metadata={"description": "A unique key per batch: a retry with the same key returns the first answer."},
    )


class RescoreSchema(Schema):
    customers = fields.Integer(metadata={"description": "Customers of the batch queued for an incremental rescore."})
    status = fields.String(
        metadata={"description": "`done` when the rescore has already run, `queued` when it will run within seconds."}
    )
    mode = fields.String(metadata={"description": "Always `incremental` (those customers only)."})


class PurchaseResultSchema(Schema):
    accepted = fields.Integer(metadata={"description": "Lines in the request."})
    new = fields.Integer(metadata={"description": "Lines written (others were already present)."})
    duplicates = fields.Integer()
    customers_new = fields.Integer()
    import_id = fields.Integer()
    warnings = fields.List(fields.Dict())
    rescore = fields.Nested(RescoreSchema, allow_none=True)


# --- other resources ---------------------------------------------------------------------------


class SegmentSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    list = fields.String(attribute="list_name")
    filter = fields.String(attribute="query")
    owner_email = fields.String()
    store_id = fields.Integer(allow_none=True)
    created_at = UtcDateTime()


class SegmentListSchema(Schema):
    items = fields.List(fields.Nested(SegmentSchema))


class CampaignSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    store_id = fields.Integer(allow_none=True)
    audience = fields.String()
    status = fields.String()
    control_share = fields.Float()
    created_at = UtcDateTime()
    started_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)
    expires_at = UtcDateTime(allow_none=True)


class CampaignPageSchema(Schema):
    items = fields.List(fields.Nested(CampaignSchema))
    next_after = fields.String(allow_none=True)


class GroupSchema(Schema):
    n = fields.Integer()
    buyers = fields.Integer()
    revenue = fields.Float()
    mean = fields.Float()
    rate = fields.Float(allow_none=True)


class DifferenceSchema(Schema):
    estimate = fields.Float(allow_none=True)
    low = fields.Float(allow_none=True)
    high = fields.Float(allow_none=True)


class CampaignResultsSchema(Schema):
    campaign = fields.Nested(CampaignSchema)
    status_counts = fields.Dict(keys=fields.String(), values=fields.Integer())
    available = fields.Boolean()
    days = fields.Integer(allow_none=True)
    complete = fields.Boolean(allow_none=True)
    delivery = fields.Dict(keys=fields.String(), values=fields.Integer(), allow_none=True)
    message = fields.Nested(GroupSchema, allow_none=True)
    control = fields.Nested(GroupSchema, allow_none=True)
    rate_difference = fields.Nested(DifferenceSchema, allow_none=True)
    revenue_difference = fields.Nested(DifferenceSchema, allow_none=True)
    rate_text = fields.String(allow_none=True)
    revenue_text = fields.String(allow_none=True)


class BundleArgs(PageArgs):
    q = fields.String(validate=validate.Length(max=200))
    min_lift = fields.Float(validate=validate.Range(min=0, max=1e9), allow_nan=False)
    min_confidence = fields.Float(validate=validate.Range(min=0, max=1), allow_nan=False)
    min_support = fields.Float(validate=validate.Range(min=0, max=1), allow_nan=False)


class BundleSchema(Schema):
    id = fields.Integer()
    antecedents = fields.List(fields.String())
    consequents = fields.List(fields.String())
    antecedent_names = fields.String()
    consequent_names = fields.String()
    support = fields.Float()
    confidence = fields.Float()
    lift = fields.Float()
    baskets = fields.Integer()


class BundlePageSchema(Schema):
    items = fields.List(fields.Nested(BundleSchema))
    next_after = fields.String(allow_none=True)


class ModelSchema(Schema):
    name = fields.String()
    title = fields.String()
    trained = fields.Boolean()
    trained_at = UtcDateTime(allow_none=True)
    state = fields.String(allow_none=True)
    window = fields.Dict(allow_none=True, metadata={"description": "The data the model was trained on."})
    metrics = fields.Dict(allow_none=True, metadata={"description": "Metrics stored with the model."})


class ModelListSchema(Schema):
    items = fields.List(fields.Nested(ModelSchema))


class RedeemInSchema(StrictSchema):
    customer_id = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "Loyalist's customer id."},
    )
    external_id = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "Or the store's customer id."},
    )

    @validates_schema
    def _one(self, data, **kwargs):
        if (data.get("customer_id") is None) == (data.get("external_id") is None):
            raise ValidationError("Give customer_id or external_id (one of them).", "customer_id")


class RedeemedSchema(Schema):
    code = fields.String()
    campaign_id = fields.Integer()
    customer_id = fields.Integer()
    redeemed_at = UtcDateTime()
