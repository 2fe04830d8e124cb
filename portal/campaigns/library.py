"""The message-template library page: every purpose's text, editable by admins for all stores or one store.

Registered on the campaigns blueprint by portal/campaigns/views.py (``campaigns.templates_page``);
the rules (known placeholders, where a store's text comes from) live in
portal/services/campaigns/templates.py.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal.campaigns.forms import TemplateForm
from portal.params import parse_id
from portal.security import user_store_id
from portal.services import stores as stores_service
from portal.services.campaigns import campaigns as campaign_service
from portal.services.campaigns import templates


def _store_arg(value: str | None) -> int | None:
    """The store whose texts are shown: a store user's own; for admins the one asked for (None: all stores)."""
    own = user_store_id(current_user)
    if current_user.role != "admin":
        return own
    store_id = parse_id(value)
    if store_id is not None and stores_service.get(store_id) is None:
        abort(404)
    return store_id


def _render(store_id: int | None, errors: dict | None = None, typed: dict | None = None, status: int = 200):
    stores = stores_service.all_stores() if current_user.role == "admin" else []
    return render_template(
        "campaigns/templates.html",
        entries=templates.library(store_id, with_stats=True),
        store=stores_service.get(store_id) if store_id is not None else None,
        store_id=store_id,
        stores=stores,
        can_edit=current_user.role == "admin",
        placeholders=campaign_service.PLACEHOLDERS,
        errors=errors or {},
        typed=typed or {},
        form=TemplateForm(),
    ), status


def templates_page():
    """GET: the library (a store's versions with ?store=ID for admins). POST (admins): save or reset one text."""
    if request.method == "GET":
        return _render(_store_arg(request.args.get("store")))
    if current_user.role != "admin":
        abort(403)
    form = TemplateForm()
    store_id = _store_arg(form.store.data)
    back = url_for("campaigns.templates_page", **({"store": store_id} if store_id is not None else {}))
    purpose = (form.purpose.data or "").strip()
    if purpose not in templates.PURPOSES:
        flash("Unknown template: nothing was changed.", "error")
        return redirect(back)
    label = templates.PURPOSES[purpose].label
    if request.form.get("action") == "reset":  # CSRF is checked for every POST (CSRFProtect)
        if templates.reset(purpose, store_id, current_user.email):
            flash(f"{label}: back to the {'chain’s' if store_id is not None else 'default'} text.", "success")
        else:
            flash(f"{label} had no changes to reset.", "info")
        return redirect(back)
    if not form.validate_on_submit():
        errors = {purpose: [e for errs in form.errors.values() for e in errs]}
        return _render(store_id, errors, {purpose: form.body.data or ""}, 400)
    try:
        templates.save(purpose, form.body.data, store_id, current_user.email)
    except campaign_service.CampaignError as exc:
        return _render(store_id, {purpose: [str(exc)]}, {purpose: form.body.data or ""}, 400)
    flash(f"{label} saved" + (" for this store." if store_id is not None else " for every store."), "success")
    return redirect(back)
