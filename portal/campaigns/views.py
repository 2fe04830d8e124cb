"""Campaign pages: the list, and a campaign's progress, exclusions and recipients.

The builder (audience picker, preview, schedule) is part 2; campaigns are created with
``flask campaign create`` until then. Only admins and managers send or cancel.
"""
from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select

from portal import sms
from portal.campaigns.forms import ActionForm
from portal.extensions import db
from portal.models import Campaign, Customer, OutboxMessage
from portal.security import roles_required
from portal.services import audit, campaigns as campaign_service, sending
from portal.services.listing import Page

bp = Blueprint("campaigns", __name__)


def _campaign_or_404(campaign_id: int) -> Campaign:
    campaign = db.session.scalar(campaign_service.visible_campaigns(current_user).where(Campaign.id == campaign_id))
    if campaign is None:
        abort(404)
    return campaign


@bp.route("/campaigns")
def index():
    page = Page.from_request(campaign_service.visible_campaigns(current_user), key=Campaign.id,
                             sort=Campaign.created_at, descending=True)
    counts = {c.id: campaign_service.status_counts(c.id) for c in page.items}
    return render_template("campaigns/index.html", page=page, counts=counts)


@bp.route("/campaigns/<int:campaign_id>")
def detail(campaign_id: int):
    campaign = _campaign_or_404(campaign_id)
    counts = campaign_service.status_counts(campaign.id)
    rows = (select(OutboxMessage, Customer.external_id, Customer.name)
            .join(Customer, Customer.id == OutboxMessage.customer_id)
            .where(OutboxMessage.campaign_id == campaign.id))
    page = Page.from_request(rows, key=OutboxMessage.id, scalars=False, size=100)
    messages = sum(n for s, n in counts.items() if s != "control")
    done = sum(n for s, n in counts.items() if s in sending.FINAL and s != "control")
    dry_run = isinstance(sms.gateway_from_config(current_app.config), sms.DryRunGateway)
    return render_template("campaigns/detail.html", campaign=campaign, counts=counts, page=page,
                           job=sending.latest_job(campaign.id), form=ActionForm(), messages=messages, done=done,
                           exclusions=campaign_service.EXCLUSIONS, dry_run=dry_run,
                           can_send=current_user.role in ("admin", "manager"),
                           left=sum(counts.get(s, 0) for s in sending.IN_PROGRESS))


@bp.route("/campaigns/<int:campaign_id>/send", methods=["POST"])
@roles_required("admin", "manager")
def send(campaign_id: int):
    campaign = _campaign_or_404(campaign_id)
    if ActionForm().validate_on_submit():
        try:
            sending.start_send(campaign.id, user_email=audit.actor_email())
        except campaign_service.CampaignError as exc:
            flash(str(exc), "error")
        else:
            flash("Sending started. This page shows its progress.", "success")
    return redirect(url_for("campaigns.detail", campaign_id=campaign.id))


@bp.route("/campaigns/<int:campaign_id>/cancel", methods=["POST"])
@roles_required("admin", "manager")
def cancel(campaign_id: int):
    campaign = _campaign_or_404(campaign_id)
    if ActionForm().validate_on_submit():
        try:
            n = campaign_service.cancel_campaign(campaign.id, audit.actor_email())
        except campaign_service.CampaignError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Campaign cancelled: {n} messages will not be sent.", "success")
    return redirect(url_for("campaigns.detail", campaign_id=campaign.id))
