"""Campaign views around sending: live progress (JSON polled by static/js/campaign_progress.js) and a test send.

Registered on the campaigns blueprint by portal/campaigns/views.py (``bp.add_url_rule``), so the
endpoints read ``campaigns.progress_json`` and ``campaigns.test_send``.
"""

from __future__ import annotations

from flask import abort, flash, jsonify, redirect, url_for
from flask_login import current_user

from portal.campaigns.forms import TestSendForm
from portal.formatting import count, number
from portal.models import Campaign
from portal.services.campaigns import builder
from portal.services.campaigns import campaigns as campaign_service
from portal.services.campaigns import test_send as test_send_service
from portal.services.campaigns.progress import campaign_progress


def _campaign_or_404(campaign_id: int) -> Campaign:
    campaign = campaign_service.get_for_user(campaign_id, current_user)
    if campaign is None:
        abort(404)
    return campaign


def progress_json(campaign_id: int):
    """Sending progress from the outbox: the detail page polls it every few seconds while a campaign sends."""
    campaign = _campaign_or_404(campaign_id)
    data = campaign_progress(campaign)
    data["text"] = f"{number(data['done'])} of {count(data['messages'], 'message')} finished."
    data["detail"] = " · ".join(f"{s.replace('_', ' ')}: {number(n)}" for s, n in data["counts"].items())
    response = jsonify(data)
    response.headers["Cache-Control"] = "no-store"
    return response


def test_send(campaign_id: int):
    """Send the campaign's message, with a TEST coupon, to the user's own phone (admins and managers)."""
    campaign = _campaign_or_404(campaign_id)
    back = url_for(
        "campaigns.confirm" if campaign.status in ("draft", "stopped", "waiting") else "campaigns.detail",
        campaign_id=campaign.id,
    )
    form = TestSendForm()
    if not form.validate_on_submit():
        flash("Test message not sent: " + " ".join(e for errs in form.errors.values() for e in errs), "error")
        return redirect(back)
    _zone, store = builder.zone_of_campaign(campaign)
    try:
        result = test_send_service.send_test(
            campaign, form.phone.data, current_user.email, region=(store.phone_region if store else None) or "US"
        )
    except test_send_service.TestSendError as exc:
        flash(f"Test message not sent: {exc}", "error")
        return redirect(back)
    if result.error:
        flash(f"Test message to {result.phone} not sent. {result.error}", "error")
    elif result.dry_run:
        flash(
            f"Dry run: the test message to {result.phone} was recorded, not sent (Twilio is not configured). "
            f"It reads: {result.body}",
            "warning",
        )
    else:
        flash(
            f"Test message sent to {result.phone} with coupon {result.code} (a test: it cannot be redeemed). "
            f"It reads: {result.body}",
            "success",
        )
    return redirect(back)
