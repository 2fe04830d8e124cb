"""Twilio webhooks: /sms/status and /sms/inbound (no login; X-Twilio-Signature required).

Both check the signature against the URL Twilio called — PUBLIC_BASE_URL + path when set
(behind a proxy the app sees another host), else the request URL — with TWILIO_AUTH_TOKEN;
forged, unsigned, or no token configured: 403. Both are idempotent: every callback is stored
once in ``sms_events`` under a dedupe key, and a repeat changes nothing.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, request

from portal import sms
from portal.services.campaigns import outbox, replies

bp = Blueprint("webhooks", __name__)


def _public_url() -> str:
    base = (current_app.config.get("PUBLIC_BASE_URL") or "").strip().rstrip("/")
    if not base:
        return request.url
    query = request.query_string.decode()
    return base + request.path + (f"?{query}" if query else "")


def _verified_form() -> dict[str, str]:
    """The POSTed parameters, or 403 unless Twilio signed exactly these for our public URL."""
    token = current_app.config.get("TWILIO_AUTH_TOKEN")
    form = request.form.to_dict(flat=True)
    if not sms.verify_signature(
        token or "",
        _public_url(),
        request.form,
        request.headers.get("X-Twilio-Signature"),
        request.headers.get("X-Twilio-Webhooks-Signature-Settings"),
    ):
        abort(403)
    return form


@bp.route("/sms/status", methods=["POST"])
def sms_status():
    """A delivery status callback: update the message, or keep it until the send is recorded."""
    outbox.record_status_callback(_verified_form())
    return Response("", 204)


@bp.route("/sms/inbound", methods=["POST"])
def sms_inbound():
    """A customer's reply: STOP words opt out, START/YES/UNSTOP opt back in, HELP/INFO answer."""
    text = replies.record_reply(_verified_form())
    return Response(sms.twiml_message(text), mimetype="text/xml")
