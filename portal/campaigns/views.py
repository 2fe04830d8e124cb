"""Campaign pages: the builder and list, the confirm step, a campaign's progress and results, redemption.

Flow: build (audience, message, schedule; live counts from /campaigns/audience and
/campaigns/preview, or the "Check" button without JavaScript) → create a draft (the audience is
fixed then: anyone may draft, marketers included) → confirm (exactly how many messages and what
they cost) → send (admins and managers only, checked here on the server) → progress → results.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import NotFound
from wtforms.fields.choices import SelectChoice

from portal.campaigns import library, live
from portal.campaigns.forms import FILTER_FIELDS, ActionForm, BuilderForm, RedeemForm, SendForm, TestSendForm
from portal.formatting import money
from portal.models import Campaign, Customer, OutboxMessage
from portal.paging import Page
from portal.params import parse_id
from portal.security import is_safe_next, roles_required, user_store_id
from portal.services import settings
from portal.services.campaigns import builder, redemption, resuming, send_options, templates
from portal.services.campaigns import campaigns as campaign_service
from portal.services.campaigns import results as campaign_results
from portal.services.campaigns import test_send as test_send_service
from portal.services.campaigns.progress import campaign_progress
from portal.services.clock import aware, utcnow
from portal.services.customers.customers import get_for_user
from portal.services.lists import registry, segments
from portal.services.summaries import campaigns as campaign_summaries

bp = Blueprint("campaigns", __name__)
SENDERS = ("admin", "manager")
bp.add_url_rule("/campaigns/templates", view_func=library.templates_page, methods=["GET", "POST"])
bp.add_url_rule("/campaigns/<int:campaign_id>/progress.json", view_func=live.progress_json)
bp.add_url_rule(
    "/campaigns/<int:campaign_id>/test-send", view_func=roles_required(*SENDERS)(live.test_send), methods=["POST"]
)
_BUILDER_KEYS = (*FILTER_FIELDS, "segment", "name", "template", "control", "when", "send_at", "expires")


@bp.errorhandler(segments.SegmentNotFound)
def _segment_not_found(_exc):
    """A segment id that is absent or another store's, anywhere the builder takes one: 404, never 403."""
    return current_app.handle_http_exception(NotFound())


def _campaign_or_404(campaign_id: int) -> Campaign:
    campaign = campaign_service.get_for_user(campaign_id, current_user)
    if campaign is None:
        abort(404)
    return campaign


def _dry_run() -> bool:
    return send_options.is_dry_run()


def _builder_form(formdata=None) -> BuilderForm:
    """The builder form with its choices, time zone and defaults (from the settings).

    On GET, ``purpose=<key>`` fills an empty message box (and name) from the template library, in the
    version of the campaign's store; ``customer=<external id>`` makes the audience exactly that customer.
    """
    problems = []
    if formdata is None and request.method == "GET":
        args = MultiDict([(k, v) for k, v in request.args.items(multi=True) if k in _BUILDER_KEYS and v])
        if "store" in args:
            args["store"] = builder.store_name(args["store"])
        purpose = request.args.get("purpose", "").strip()
        if purpose:
            try:
                chosen = templates.purpose_or_error(purpose)
            except templates.TemplateError as exc:
                problems.append(str(exc))
            else:
                filters = {k: args[k] for k in FILTER_FIELDS if args.get(k)}
                if not args.get("template"):
                    store_id = campaign_service.campaign_store_id(filters, current_user)
                    args["template"] = templates.template_for(chosen.key, store_id)
                if not args.get("name"):
                    one = (args.get("customer") or "").strip()[:40]
                    args["name"] = chosen.label + (f" for {one}" if one else "")
        formdata = args if args else None
    form = BuilderForm(formdata=formdata) if formdata is not None else BuilderForm()
    form.form_errors.extend(problems)
    form.segment.choices = [SelectChoice("", "None: use the filters below")] + [
        SelectChoice(str(s.id), f"{s.name} ({s.list_name})") for s in builder.customer_segments(current_user)
    ]
    form.store.choices = [SelectChoice(v, label) for v, label in builder.store_choices(current_user)]
    zone, _store = builder.campaign_zone(form.filter_params(), current_user)
    form.time_zone = zone
    if form.control.data is None and not form.control.raw_data:
        form.control.data = round(float(settings.get("sms.control_share")) * 100)
    if form.expires.data is None and not form.expires.raw_data:
        form.expires.data = builder.default_expiry(zone)
    return form


def _form_params(form: BuilderForm) -> dict[str, str]:
    return builder.audience_params(form.filter_params(), form.segment.data, current_user)


def _has_audience_args() -> bool:
    return any(request.args.get(k) for k in (*FILTER_FIELDS, "segment"))


def _template_links() -> list[tuple[str, str, str]]:
    """(key, label, builder URL) per library template, keeping the audience already in the query string."""
    keep = {k: v for k, v in request.args.items() if k in (*FILTER_FIELDS, "segment") and v}
    return [(p.key, p.label, url_for("campaigns.index", **keep, purpose=p.key)) for p in templates.PURPOSES.values()]


def _summaries(form: BuilderForm, with_preview: bool):
    """(audience, preview, schedule note) for the server-rendered builder (the no-JavaScript path)."""
    params = _form_params(form)
    typed = form.control.data
    share = typed / 100 if typed is not None and 0 <= typed <= 90 else float(settings.get("sms.control_share"))
    audience = builder.audience_summary(params, share, current_user)
    preview = None
    if with_preview and form.template.data and not form.template.errors:
        try:
            preview = builder.preview_summary(
                params, form.template.data, current_user, expires_at=_expires_at(form), messages=audience.messages
            )
        except campaign_service.CampaignError as exc:
            form.template.errors = [*form.template.errors, str(exc)]
    return audience, preview


def _expires_at(form: BuilderForm) -> datetime | None:
    return builder.expiry_utc(form.expires.data, form.time_zone) if form.expires.data else None


def _scheduled_for(form: BuilderForm) -> datetime | None:
    if form.when.data == "later" and form.send_at.data:
        return builder.to_utc(form.send_at.data, form.time_zone)
    return None


def _render_index(form: BuilderForm, audience=None, preview=None, status: int = 200):
    page = Page.from_request(
        campaign_service.visible_campaigns(current_user), key=Campaign.id, sort=Campaign.created_at, descending=True
    )
    numbers, numbers_as_of = campaign_summaries.numbers(page.items)  # stored, computed when the data changed
    note = builder.quiet_note(form.time_zone, _scheduled_for(form)) if form.time_zone else ""
    _zone, store = builder.campaign_zone(form.filter_params(), current_user)
    params = form.filter_params()
    return render_template(
        "campaigns/index.html",
        page=page,
        numbers=numbers,
        campaign_stores=builder.campaign_stores(page.items),
        result_days=int(settings.get("sms.result_days")),
        numbers_as_of=numbers_as_of,
        form=form,
        target=builder.target_customer(params, current_user),
        without_customer=url_for(
            "campaigns.index", **{k: v for k, v in request.args.items() if k not in ("customer", "name") and v}
        ),
        template_links=_template_links(),
        can_edit_templates=current_user.role == "admin",
        audience=audience,
        preview=preview,
        quiet_note=note,
        can_send=current_user.role in SENDERS,
        dry_run=_dry_run(),
        currency=store.currency if store else "USD",
    ), status


@bp.route("/campaigns", methods=["GET", "POST"])
def index():
    """The builder and the list of campaigns; POST checks (action=check) or creates a draft."""
    campaign_arg = request.args.get("campaign", "")
    if request.method == "GET" and parse_id(campaign_arg) is not None:  # list_url('campaign-recipients', …)
        return redirect(url_for("campaigns.detail", campaign_id=parse_id(campaign_arg)))
    form = _builder_form()
    if request.method == "GET":
        audience = preview = None
        if _has_audience_args():  # e.g. the churn page's "send retention offer to this selection"
            audience, preview = _summaries(form, with_preview=bool(form.template.data))
        return _render_index(form, audience, preview)
    if request.form.get("action") == "check":  # the no-JavaScript "check": counts and preview, nothing created
        audience, preview = _summaries(form, with_preview=True)
        return _render_index(form, audience, preview)
    if not form.validate_on_submit():
        audience, preview = _summaries(form, with_preview=True)
        return _render_index(form, audience, preview, 400)
    try:
        campaign = campaign_service.create_campaign(
            form.name.data,
            _form_params(form),
            form.template.data,
            control_share=form.control.data / 100,
            user=current_user,
            user_email=current_user.email,
            expires_at=_expires_at(form),
            scheduled_for=_scheduled_for(form),
        )
    except campaign_service.CampaignError as exc:
        form.form_errors.append(str(exc))
        audience, preview = _summaries(form, with_preview=True)
        return _render_index(form, audience, preview, 400)
    flash(
        "Draft saved with its audience fixed. Check the numbers, then send."
        if current_user.role in SENDERS
        else "Draft saved with its audience fixed. An admin or a manager reviews and sends it.",
        "success",
    )
    return redirect(url_for("campaigns.confirm", campaign_id=campaign.id))


@bp.route("/campaigns/audience")
def audience_json():
    """Size of an audience and every exclusion with its count, as JSON (the builder's live counter)."""
    params = builder.audience_params(
        {k: request.args.get(k, "") for k in FILTER_FIELDS}, request.args.get("segment"), current_user
    )
    raw = request.args.get("control", "")
    try:
        share = float(raw) / 100 if raw.strip() else float(settings.get("sms.control_share"))
    except ValueError:
        return jsonify(error="The control-group share must be a number between 0 and 90."), 400
    if not 0 <= share <= 0.9:
        return jsonify(error="The control-group share must be between 0 and 90 %."), 400
    return jsonify(builder.audience_summary(params, share, current_user).as_json())


@bp.route("/campaigns/preview", methods=["POST"])
def preview_json():
    """The message for the first eligible customers as their phones would show it, with segments and cost."""
    form = _builder_form(formdata=request.form)
    params = _form_params(form)
    messages = request.form.get("messages", "")
    try:
        summary = builder.preview_summary(
            params,
            request.form.get("template", ""),
            current_user,
            expires_at=_expires_at(form) if form.expires.data else None,
            messages=parse_id(messages),
        )
    except campaign_service.CampaignError as exc:
        return jsonify(error=str(exc)), 400
    scheduled = None
    if form.when.data == "later" and form.send_at.data:
        scheduled = builder.to_utc(form.send_at.data, form.time_zone)
    _zone, store = builder.campaign_zone(params, current_user)
    cost = summary.cost
    return jsonify(
        {
            **summary.as_json(),
            "quiet_note": builder.quiet_note(form.time_zone, scheduled),
            "time_zone": form.time_zone.key,
            "cost_text": money(cost, store) if cost is not None else None,
        }
    )


@bp.route("/campaigns/<int:campaign_id>/confirm")
def confirm(campaign_id: int):
    """The confirm step: exactly how many messages go out, what they cost, when, to whom."""
    campaign = _campaign_or_404(campaign_id)
    if campaign.status not in ("draft", "stopped", "waiting"):
        return redirect(url_for("campaigns.detail", campaign_id=campaign.id))
    cost = campaign_results.outbox_cost(campaign.id)
    counts = campaign_service.status_counts(campaign.id)
    samples = campaign_service.sample_messages(campaign.id)
    zone, store = builder.zone_of_campaign(campaign)
    scheduled = aware(campaign.scheduled_for)
    return render_template(
        "campaigns/confirm.html",
        campaign=campaign,
        cost=cost,
        counts=counts,
        samples=samples,
        exclusions=campaign_service.EXCLUSIONS,
        zone=zone,
        store=store,
        scheduled_local=scheduled.astimezone(zone) if scheduled else None,
        quiet_note=builder.quiet_note(zone, scheduled if scheduled and scheduled > utcnow() else None),
        form=SendForm(expected=str(cost.messages)),
        cancel_form=ActionForm(),
        test_form=TestSendForm(phone=test_send_service.last_phone(current_user.email)),
        test_sends_left=test_send_service.PER_HOUR - test_send_service.sent_in_last_hour(current_user.email),
        can_send=current_user.role in SENDERS,
        dry_run=_dry_run(),
    )


@bp.route("/campaigns/<int:campaign_id>")
def detail(campaign_id: int):
    campaign = _campaign_or_404(campaign_id)
    stored = campaign_summaries.read(campaign)  # the numbers as computed when the outbox or purchases changed
    progress = campaign_progress(campaign, stored.counts)
    counts = progress["counts"]
    rows = (
        select(OutboxMessage, Customer.external_id, Customer.name, Customer.sms_consent)
        .join(Customer, Customer.id == OutboxMessage.customer_id)
        .where(OutboxMessage.campaign_id == campaign.id)
    )
    group = request.args.get("group", "")
    if group in ("message", "control"):
        rows = rows.where(OutboxMessage.group == group)
    page = Page.from_request(rows, key=OutboxMessage.id, scalars=False, size=100)
    export_available = "campaign-recipients" in registry.LISTS
    return render_template(
        "campaigns/detail.html",
        campaign=campaign,
        counts=counts,
        page=page,
        job=resuming.latest_job(campaign.id),
        form=ActionForm(),
        live=progress,
        messages=progress["messages"],
        done=progress["done"],
        exclusions=campaign_service.EXCLUSIONS,
        dry_run=_dry_run(),
        can_send=current_user.role in SENDERS,
        left=progress["left"],
        results=stored.results(),
        numbers_as_of=stored.as_of,
        no_results=campaign_results.no_results_reason(campaign),
        zone=builder.zone_of_campaign(campaign)[0],
        export_available=export_available,
        export_params={"campaign": str(campaign.id)},
    )


@bp.route("/campaigns/<int:campaign_id>/send", methods=["POST"])
@roles_required(*SENDERS)
def send(campaign_id: int):
    """Start sending (admins and managers). From the confirm step, only the number that was shown."""
    campaign = _campaign_or_404(campaign_id)
    form = SendForm()
    if form.validate_on_submit():
        expected = (form.expected.data or "").strip()
        if parse_id(expected) is not None:
            now_left = campaign_results.outbox_cost(campaign.id).messages
            if now_left != int(expected):
                flash(
                    f"The number of messages changed from {int(expected):,} to {now_left:,} since this page "
                    "was shown. Check it again before sending.",
                    "error",
                )
                return redirect(url_for("campaigns.confirm", campaign_id=campaign.id))
        try:
            resuming.start_send(campaign.id, user_email=current_user.email)
        except campaign_service.CampaignError as exc:
            flash(str(exc), "error")
        else:
            flash(
                "Sending started. This page shows its progress."
                if not campaign.scheduled_for
                else "Scheduled: messages wait for their time (and for the end of quiet hours).",
                "success",
            )
    return redirect(url_for("campaigns.detail", campaign_id=campaign.id))


@bp.route("/campaigns/<int:campaign_id>/cancel", methods=["POST"])
@roles_required(*SENDERS)
def cancel(campaign_id: int):
    campaign = _campaign_or_404(campaign_id)
    if ActionForm().validate_on_submit():
        try:
            n = campaign_service.cancel_campaign(campaign.id, current_user.email)
        except campaign_service.CampaignError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Campaign cancelled: {n} messages will not be sent.", "success")
    return redirect(url_for("campaigns.detail", campaign_id=campaign.id))


# --- redemption on the customer page ---------------------------------------------------------


@bp.app_template_global()
def open_coupons(customer_id: int) -> list[dict]:
    """The customer's coupon codes that can still be redeemed (for templates/campaigns/_redeem.html)."""
    return redemption.open_coupons(customer_id)


@bp.route("/campaigns/redeem", methods=["POST"])
@roles_required(*SENDERS)
def redeem():
    """Staff redeem a coupon code for a customer (the form on the customer page); audited."""
    form = RedeemForm()
    customer_id = form.customer_id.data or ""
    customer = get_for_user(parse_id(customer_id), current_user) if parse_id(customer_id) is not None else None
    if customer is None:
        abort(404)
    back = form.next.data if is_safe_next(form.next.data) else url_for("customers.detail", customer_id=customer.id)
    if not form.validate_on_submit():
        errors = [e for errs in form.errors.values() for e in errs]
        flash("Coupon not redeemed: " + " ".join(errors), "error")
        return redirect(back)
    try:
        row = redemption.redeem_by_staff(form.code.data, customer, current_user.email, user_store_id(current_user))
    except redemption.RedemptionError as exc:
        flash(f"Coupon not redeemed: {exc}", "error")
    else:
        flash(f"Coupon {row.coupon_code} redeemed for {customer.name or customer.external_id}.", "success")
    return redirect(back)
