"""Mail pages: /account/mail (your choices), /mail/unsubscribe/<token> (no login), /admin/mail (admins)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal.extensions import csrf
from portal.mail.forms import PreferencesForm
from portal.models import MailMessage
from portal.paging import Page
from portal.security import roles_required
from portal.services.mail import outbox, preferences, transport

bp = Blueprint("mail", __name__)


@bp.route("/account/mail", methods=["GET", "POST"], endpoint="preferences")
def preferences_page():
    """Which e-mails the logged-in user gets, and when the digest comes."""
    choices = preferences.for_user(current_user.id)
    form = PreferencesForm(obj=choices)
    if form.validate_on_submit():
        wanted = {kind: getattr(form, kind).data for kind in preferences.KINDS}
        preferences.save(current_user, wanted, form.digest_weekday.data, form.digest_hour.data)
        flash("Your e-mail choices are saved.", "success")
        return redirect(url_for("mail.preferences"))
    return render_template(
        "mail/preferences.html", form=form, store=current_user.store, alerts=preferences.ALERT_KINDS
    ), (400 if form.errors else 200)


@bp.route("/mail/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt  # the signed token is the proof; mail clients' one-click POST (RFC 8058) carries no CSRF token
def unsubscribe(token: str):
    """GET: say what the link switches off and ask to confirm (link scanners only GET); POST: switch it off."""
    try:
        user, kind = preferences.read_token(token)
    except preferences.InvalidLink as exc:
        return render_template("mail/unsubscribe.html", error=str(exc)), 400
    if request.method == "POST":
        preferences.unsubscribe(token)
        return render_template("mail/unsubscribe.html", done=True, user=user, label=preferences.LABELS[kind])
    return render_template("mail/unsubscribe.html", token=token, user=user, label=preferences.LABELS[kind])


@bp.route("/admin/mail")
@roles_required("admin")
def log():
    """Every mail built: to whom, kind, key, subject, status, when sent, error (admins only)."""
    kind = request.args.get("kind", "").strip()
    status = request.args.get("status", "").strip()
    to = request.args.get("to", "").strip()
    if (kind and kind not in preferences.KINDS) or (status and status not in outbox.STATUSES):
        abort(400)
    page = Page.from_request(outbox.log_query(kind, status, to), key=MailMessage.id, descending=True)
    shown = None
    if request.args.get("show", "").isdigit():
        shown = next((m for m in page.items if m.id == int(request.args["show"])), None)
    return render_template(
        "mail/admin.html",
        page=page,
        counts=outbox.status_counts(),
        kinds=preferences.KINDS,
        statuses=outbox.STATUSES,
        q_kind=kind,
        q_status=status,
        q_to=to,
        shown=shown,
        live=transport.configured(),
    )
