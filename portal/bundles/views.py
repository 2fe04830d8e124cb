"""The bundles page: dead stock, bundle suggestions as actions, the lookup, and mining with progress."""

from datetime import timezone

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal import jobs
from portal.bundles.forms import LookupForm, MiningForm
from portal.models import BundleRule
from portal.paging import Page
from portal.security import roles_required
from portal.services import bundles as bundle_service

bp = Blueprint("bundles", __name__)

MINERS = ("admin", "manager")
DEAD_SHOWN = 200
# The export's sort keys, plus the rank: rules are stored most stock value to clear first, so id order is it.
SORTS = {
    "rank": BundleRule.id,
    "lift": BundleRule.lift,
    "confidence": BundleRule.confidence,
    "support": BundleRule.support,
    "baskets": BundleRule.baskets,
}
DEFAULT_SORT = "rank"
RULES_PER_PAGE = 20


def _sort(raw: str | None) -> tuple[str, object, bool]:
    """(sort key as given, column, descending) from ``?sort=-lift``; unknown keys fall back to the default."""
    key = raw if raw and raw.lstrip("-") in SORTS else DEFAULT_SORT
    return key, SORTS[key.lstrip("-")], key.startswith("-")


def _sort_url(current: str):
    """Link for a column header: descending first, a second click flips it."""

    def url(key: str) -> str:
        args = {k: v for k, v in request.args.to_dict().items() if k not in ("after", "sort", "job")}
        first = key if key == "rank" else f"-{key}"  # the rank reads best first; the numbers largest first
        flipped = f"-{key}" if key == "rank" else key
        return url_for("bundles.index", **args, sort=flipped if current == first else first) + "#suggestions"

    return url


def _utc(value):
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def _last_outcome(model):
    """The latest mining job when it is newer than the rules shown (failed, or found nothing).

    Mining is chain-wide: only admins and the job's starter see it (``jobs.visible_to``)."""
    run = bundle_service.latest_run()
    if run is None or not jobs.visible_to(run, current_user):
        return None
    run = jobs.get(run.id)
    if run.status in ("queued", "running"):
        return run
    newer = model is None or (run.finished_at is not None and _utc(run.finished_at) >= _utc(model.trained_at))
    if run.status == "failed" and newer:
        return run
    if run.status == "done" and newer and (run.result or {}).get("rules") == 0:
        return run
    return None


def _render(form: MiningForm, status: int = 200):
    args = request.args
    q = args.get("q", "").strip()
    model = bundle_service.active_model()
    stock = bundle_service.dead_stock_report(current_user, store=args.get("store") or None, q=q or None)
    sort_key, sort_col, descending = _sort(args.get("sort"))
    page = Page.from_request(
        bundle_service.rules_query(model, q or None),
        key=BundleRule.id,
        sort=sort_col,
        descending=descending,
        size=RULES_PER_PAGE,
    )
    if page.next_url and request.endpoint != "bundles.index":  # re-shown after a refused POST
        page.next_url = page.next_url.replace(url_for(request.endpoint), url_for("bundles.index"), 1)
    names = bundle_service.display_names(page.items)
    suggestions = [
        {"rule": r, "pitch": bundle_service.pitch_html(r, names), "dead": bundle_service.dead_item(model, r)}
        for r in page.items
    ]
    lookup_form = LookupForm(args)
    found = bundle_service.lookup(lookup_form.product.data, model) if args.get("product") else None
    found_pitches = (
        [{"rule": r, "pitch": bundle_service.pitch_html(r, found.names)} for r in found.rules]
        if found is not None
        else []
    )
    outcome = _last_outcome(model)
    shown_job = jobs.get_for(args["job"], current_user) if args.get("job") else None
    if shown_job is None and outcome is not None and outcome.status in ("queued", "running"):
        shown_job = outcome
    suggestion = None
    if outcome is not None and outcome.status == "done":
        result = outcome.result or {}
        if result.get("suggested_baskets"):
            suggestion = {**result.get("params", {}), "min_baskets": result["suggested_baskets"]}
    return render_template(
        "bundles/index.html",
        model=model,
        stock=stock,
        page=page,
        suggestions=suggestions,
        lookup_form=lookup_form,
        found=found,
        found_pitches=found_pitches,
        form=form,
        can_mine=current_user.role in MINERS,
        outcome=outcome,
        suggestion=suggestion,
        job=shown_job,
        params=args,
        q=q,
        dead_shown=DEAD_SHOWN,
        stores=bundle_service.store_names(current_user),
        pct=bundle_service.pct,
        sort_key=sort_key,
        sort_url=_sort_url(sort_key),
    ), status


def _form_for_page(model) -> MiningForm:
    """The parameters form, filled with the last run's thresholds (else the settings)."""
    form = MiningForm(formdata=None)
    last = (model.manifest or {}).get("params") if model is not None else None
    params = bundle_service.parameters(**(last or {}))
    form.fill(params)
    return form


@bp.route("/bundles")
def index():
    return _render(_form_for_page(bundle_service.active_model()))


@bp.route("/bundles/mine", methods=["POST"])
@roles_required(*MINERS)
def mine():
    form = MiningForm()
    if not form.validate():
        flash("Fix the parameters marked below.", "danger")
        return _render(form, 400)
    kwargs = form.job_kwargs()
    job = bundle_service.start_mining(current_user, **kwargs)
    flash("Mining started: the bundle suggestions refresh when it finishes.", "info")
    return redirect(url_for("bundles.index", job=job.id) + "#mining")
