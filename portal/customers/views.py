"""Customer list and customer page (features, tier, churn, consent, purchases)."""

from datetime import datetime, time, timezone

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField
from wtforms.validators import DataRequired

from portal.customers.forms import ConsentForm
from portal.lists.exporting import export_response
from portal.models import PurchaseLine
from portal.paging import Page, list_page
from portal.security import roles_required
from portal.services import settings as settings_service
from portal.services import stores as store_service
from portal.services.customers import customers as customer_service
from portal.services.customers import privacy
from portal.services.scores import tiers as tier_service

bp = Blueprint("customers", __name__)


@bp.route("/customers")
def index():
    """The customer list: filters, sortable columns, keyset pages, and ``?format=csv|xlsx``."""
    response = export_response("customers")
    if response is not None:
        return response
    params = request.args
    page = list_page("customers", params, current_user)
    stores = store_service.all_stores() if current_user.role == "admin" else []
    filtered = any((params.get(k) or "").strip() for k in customer_service.FILTER_KEYS)
    return render_template("customers/index.html", page=page, params=params, stores=stores, filtered=filtered)


@bp.route("/customers/<int:customer_id>", methods=["GET", "POST"])
def detail(customer_id: int):
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
    consent_events, tier_changes = customer_service.history(customer)
    page = Page.from_request(
        customer_service.lines_query(customer),
        key=PurchaseLine.id,
        sort=PurchaseLine.purchased_at,
        descending=True,
        scalars=False,
        size=25,
    )
    values = settings_service.all_values()
    insights = {
        "reward": values.get(f"reward.{customer.tier}") if customer.tier else None,
        "progress": tier_service.progress_message(customer, values),
        "action": values.get(f"churn.action.{customer.churn_band}") if customer.churn_band else None,
        "lifecycle": customer_service.LIFECYCLE_MEANING.get(customer.lifecycle or ""),
        "horizon": values["churn.horizon_days"],
    }
    return render_template(
        "customers/detail.html",
        customer=customer,
        form=form,
        page=page,
        consent_events=consent_events,
        tier_changes=tier_changes,
        insights=insights,
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
