"""Loyalty tiers: a card per tier, the distribution chart, cluster profiles and the members list."""

from flask import Blueprint, render_template, request
from flask_login import current_user

from portal.models import Customer
from portal.paging import Page
from portal.services.customers import customers as customer_service
from portal.services.scores import model_info
from portal.services.scores import tiers as tier_service

bp = Blueprint("tiers", __name__)


@bp.route("/tiers")
def index():
    entry = model_info.file_entry("segmentation")
    state = model_info.file_state("segmentation")
    summary = tier_service.summary(current_user, (request.args.get("store") or "").strip() or None)
    query = customer_service.filtered_customers(request.args, current_user)
    if not request.args.get("tier"):
        query = query.where(Customer.tier.isnot(None))
    page = Page.from_request(query, key=Customer.id, sort=Customer.monetary, descending=True)
    moves = tier_service.latest_moves()
    return render_template(
        "tiers/index.html",
        entry=entry,
        state=state,
        summary=summary,
        page=page,
        params=request.args,
        moves=moves,
        list_name="customers",
        bar=tier_service.bar_rule(),
        stores=customer_service.store_choices(current_user),
    )
