"""Automations pages: the flows of a store with their switches, a flow's settings, preview and results, replies.

Views are thin: the services in portal/services/flows/ decide and commit. Everyone in the store's
scope may look; admins and managers switch and edit.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal.flows.forms import FlowForm, SwitchForm, for_kind, param_fields
from portal.params import parse_id
from portal.security import roles_required
from portal.services.campaigns import send_options
from portal.services.clock import utcnow, zone
from portal.services.flows import guards, kinds, manage, replies, runner
from portal.services.flows.results import flow_results

bp = Blueprint("flows", __name__)
EDITORS = ("admin", "manager")


@bp.app_context_processor
def _banner():
    """``flow_banner()`` for base.html: unread replies (admins, managers) and stores paused by the budget (admins)."""

    def flow_banner() -> dict:
        if not current_user.is_authenticated or current_user.role not in EDITORS:
            return {}
        try:
            return replies.banner(current_user, utcnow())
        except Exception:  # the banner must never break a page (e.g. before the flows migration)
            return {}

    return {"flow_banner": flow_banner}


def _flow_or_404(flow_id: int):
    flow = manage.get_for_user(flow_id, current_user)
    if flow is None:
        abort(404)
    return flow


@bp.route("/flows")
def index():
    stores = manage.stores_for(current_user)
    chosen = parse_id(request.args.get("store"))
    if chosen is not None:
        stores = [s for s in stores if s.id == chosen]
        if not stores:
            abort(404)
    now = utcnow()
    blocks = []
    for store in stores:
        flows = runner.ensure_flows(store)
        blocks.append(
            {
                "store": store,
                "flows": [
                    {"flow": f, "kind": kinds.KINDS[f.kind], "rule": kinds.describe(f.kind, f.params)} for f in flows
                ],
                "budget": guards.budget_for(store, now),
            }
        )
    return render_template(
        "flows/index.html",
        blocks=blocks,
        can_edit=current_user.role in EDITORS,
        switch_form=SwitchForm(),
        dry_run=send_options.is_dry_run(),
    )


@bp.route("/flows/<int:flow_id>/switch", methods=["POST"])
@roles_required(*EDITORS)
def switch(flow_id: int):
    flow = _flow_or_404(flow_id)
    form = SwitchForm()
    if not form.validate_on_submit():
        abort(400)
    on = form.enabled.data == "1"
    manage.switch(flow, on, current_user.email)
    label = kinds.KINDS[flow.kind].label
    flash(f"{label} is {'on: it runs once a day' if on else 'off'}.", "success")
    return redirect(url_for("flows.index", store=flow.store_id))


@bp.route("/flows/<int:flow_id>")
def detail(flow_id: int):
    flow = _flow_or_404(flow_id)
    now = utcnow()
    store = manage.store_of(flow)
    return render_template(
        "flows/detail.html",
        flow=flow,
        kind=kinds.KINDS[flow.kind],
        rule=kinds.describe(flow.kind, flow.params),
        preview=manage.preview(flow, now),
        results=flow_results(flow, now),
        zone=zone(store.timezone),
        store=store,
        can_edit=current_user.role in EDITORS,
        switch_form=SwitchForm(),
    )


@bp.route("/flows/<int:flow_id>/edit", methods=["GET", "POST"])
@roles_required(*EDITORS)
def edit(flow_id: int):
    flow = _flow_or_404(flow_id)
    form: FlowForm = for_kind(flow.kind, request.form if request.method == "POST" else None, flow)
    if form.validate_on_submit():
        values = {
            "template": form.template.data,
            "cooldown_days": form.cooldown_days.data,
            "control_share": float(form.control_share.data) / 100,
            "daily_limit": form.daily_limit.data,
            "expiry_days": form.expiry_days.data,
            **{p.key: getattr(form, f"param_{p.key}").data for p in kinds.KINDS[flow.kind].params},
        }
        try:
            manage.update(flow, values, current_user.email)
        except manage.FlowError as exc:
            form.template.errors = [*form.template.errors, str(exc)]
        else:
            flash(f"{kinds.KINDS[flow.kind].label} saved.", "success")
            return redirect(url_for("flows.detail", flow_id=flow.id))
    return render_template(
        "flows/edit.html", flow=flow, kind=kinds.KINDS[flow.kind], form=form, params=param_fields(form, flow.kind)
    )


@bp.route("/flows/replies")
@roles_required(*EDITORS)
def replies_page():
    shown = replies.recent(current_user)
    replies.mark_read(current_user)  # seen now: the badge clears
    return render_template("flows/replies.html", replies=shown)
