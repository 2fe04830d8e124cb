"""Twilio webhooks: /sms/inbound and /sms/status (no login; X-Twilio-Signature required)."""
from flask import Blueprint, abort

bp = Blueprint("webhooks", __name__)


@bp.route("/sms/inbound", methods=["POST"])
def sms_inbound():
    abort(403)


@bp.route("/sms/status", methods=["POST"])
def sms_status():
    abort(403)
