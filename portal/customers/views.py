"""Customer list and customer page (status, tier, risk, value, timeline; consent, coupon and erase boxes)."""

from datetime import datetime, time, timezone

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import load_only
from wtforms import BooleanField
from wtforms.validators import DataRequired

from portal.campaigns.views import SENDERS
from portal.customers.forms import ConsentForm
from portal.lists.exporting import export_response
from portal.models import Customer
from portal.paging import list_page
from portal.security import roles_required
from portal.services import settings as settings_service
from portal.services import stores as stores_service
from portal.services.customers import customers as customer_service
from portal.services.customers import floors, privacy, timeline
from portal.services.scores import tiers as tier_service

bp = Blueprint("customers", __name__)

# The columns the list shows (or sorts by). Loading only these keeps each row cheap: no JSON reasons, no dates to
# parse; any other column read in the template raises instead of quietly costing a query per row.
LIST_COLUMNS = (
    Customer.id,
    Customer.external_id,
    Customer.name,
    Customer.store_id,
    Customer.lifecycle,
    Customer.tier,
    Customer.monetary,
    Customer.frequency,
    Customer.recency,
    Customer.churn_probability,
    Customer.churn_band,
    Customer.sms_consent,
)


@bp.route("/customers")
def index():
    """The customer list: filters, sortable columns, keyset pages, and ``?format=csv|xlsx``."""
    response = export_response("customers")
    if response is not None:
        return response
    params = request.args
    page = list_page("customers", params, current_user, options=[load_only(*LIST_COLUMNS, raiseload=True)])
    stores = customer_service.store_choices(current_user)
    filtered = any((params.get(k) or "").strip() for k in customer_service.FILTER_KEYS)
    return render_template(
        "customers/index.html",
        page=page,
        params=params,
        stores=stores,
        filtered=filtered,
        # Each row's home store (name, currency) by id: at most a few, from the session's identity map.
        homes={sid: stores_service.get(sid) for sid in {c.store_id for c in page.items}},
        # Row links are this prefix + the id: one url_for per page, not one per row (url_for's cost adds up).
        detail_prefix=url_for("customers.index") + "/",
    )


@bp.route("/customers/<int:customer_id>", methods=["GET", "POST"])
def detail(customer_id: int):
    """One customer's story: status, tier, risk and value; the timeline (``?timeline=N`` shows more); then the
    consent, coupon and erase boxes. Another store's customer is a 404."""
    customer = customer_service.get_for_user(customer_id, current_user)
    if customer is None:
        abort(404)
    form = ConsentForm()
    if form.validate_on_submit():
        effective = (
            datetime.combine(form.effective.data, time(12), tzinfo=timezone.utc) if form.effective.data else None
        )
        try:
            customer_service.record_consent(
                customer, form.status.data, (form.source.data or "staff").strip(), effective, current_user.email
            )
        except customer_service.ConsentError as exc:
            form.status.errors.append(str(exc))
        else:
            flash("Consent recorded.", "success")
            return redirect(url_for("customers.detail", customer_id=customer.id))
    values = settings_service.all_values()
    insights = {
        "reward": values.get(f"reward.{customer.tier}") if customer.tier else None,
        "progress": tier_service.progress_message(customer, values, floors.next_tier_floor(customer)),
        "action": values.get(f"churn.action.{customer.churn_band}") if customer.churn_band else None,
        "lifecycle": customer_service.LIFECYCLE_MEANING.get(customer.lifecycle or ""),
        "horizon": values["churn.horizon_days"],
    }
    story = timeline.build(customer, timeline.clamp_limit(request.args.get("timeline")))
    more_url = (
        url_for("customers.detail", customer_id=customer.id, timeline=story.limit * 2, _anchor="timeline")
        if story.has_more and story.limit < timeline.MAX_LIMIT
        else None
    )
    purpose = customer_service.offer_purpose(customer, insights["progress"])
    offer_url = (
        # A lost customer is left out of audiences unless asked for: choosing this one customer is asking.
        url_for(
            "campaigns.index",
            customer=customer.external_id,
            purpose=purpose,
            include_lost="1" if customer.lifecycle == "Lost" else None,
        )
        if purpose and current_user.role in SENDERS
        else None
    )
    return render_template(
        "customers/detail.html",
        customer=customer,
        form=form,
        insights=insights,
        timeline=story,
        more_url=more_url,
        offer_url=offer_url,
        offer_purpose=purpose,
    )


class EraseForm(FlaskForm):
    """The erase button: a CSRF token and an explicit confirmation (no inline script for a dialog)."""

    confirm = BooleanField(
        "I understand this cannot be undone", validators=[DataRequired(message="Tick the box to confirm the erasure.")]
    )


@bp.route("/customers/<int:customer_id>/erase", methods=["POST"])
@roles_required("admin")
def erase(customer_id: int):
    """Erase a customer's personal data (admins only); purchases and consent history are kept."""
    customer = customer_service.get_for_user(customer_id, current_user)
    if customer is None:
        abort(404)
    form = EraseForm()
    if not form.validate_on_submit():
        flash(" ".join(form.confirm.errors) or "The form expired; please try again.", "danger")
        return redirect(url_for("customers.detail", customer_id=customer.id))
    try:
        cancelled = privacy.erase_customer(customer, current_user.email)
    except privacy.ErasureError as exc:
        flash(str(exc), "warning")
    else:
        extra = f" {cancelled} unsent message(s) cancelled." if cancelled else ""
        flash(f"Customer erased: name, phone and e-mail removed; purchases and consent history kept.{extra}", "success")
    return redirect(url_for("customers.detail", customer_id=customer.id))
