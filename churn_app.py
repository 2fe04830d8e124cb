"""The churn-risk & retention blueprint: views only; churn logic lives in portal/services/scores/churn.py."""

from flask import Blueprint, render_template, request
from flask_login import current_user

from portal.campaigns.views import SENDERS
from portal.models import Customer
from portal.paging import Page
from portal.services.customers.customers import LIFECYCLES, store_choices
from portal.services.scores import churn as churn_service
from portal.services.scores import model_info

bp = Blueprint("churn", __name__)


@bp.route("/churn")
def index():
    info = churn_service.model_info()
    summary = churn_service.band_summary(current_user, request.args) if info else None
    page = None
    if info:
        query = churn_service.at_risk_query(request.args, current_user)
        page = Page.from_request(query, key=Customer.id, sort=churn_service.priority(), descending=True)
    has_clv = model_info.file_entry("clv") is not None
    return render_template(
        "churn/index.html",
        info=info,
        summary=summary,
        page=page,
        params=request.args,
        list_name="at-risk",
        lifecycles=LIFECYCLES,
        has_clv=has_clv,
        stores=store_choices(current_user),
        can_send=current_user.role in SENDERS,
    )
