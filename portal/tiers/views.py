"""Loyalty tiers: a card per tier, the distribution chart, cluster profiles and the members list."""
from flask import Blueprint, render_template, request
from flask_login import current_user

from portal import model_store
from sqlalchemy import select

from portal.extensions import db
from portal.models import Customer, ModelRecord
from portal.services import customers as customer_service
from portal.services import tiers as tier_service
from portal.services.listing import Page

bp = Blueprint("tiers", __name__)


@bp.route("/tiers")
def index():
    entry = model_store.entry("CS_model.pkl")
    state = model_store.status().get("CS_model.pkl", {}).get("state") if entry else None
    summary = tier_service.summary(current_user)
    query = customer_service.filtered_customers(request.args, current_user)
    if not request.args.get("tier"):
        query = query.where(Customer.tier.isnot(None))
    page = Page.from_request(query, key=Customer.id, sort=Customer.monetary, descending=True)
    record = db.session.scalar(select(ModelRecord).where(ModelRecord.name == "segmentation",
                                                         ModelRecord.active.is_(True)))
    moves = (record.manifest or {}).get("moves") if record else None
    return render_template("tiers/index.html", entry=entry, state=state, summary=summary, page=page,
                           params=request.args, moves=moves, list_name="customers")
