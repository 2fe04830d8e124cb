"""The dashboard: the store's headline numbers, each linking to the list behind it."""

from flask import Blueprint, abort, jsonify, render_template, request
from flask_login import current_user

from portal import jobs
from portal.services.dashboard import numbers as dashboard_service
from portal.services.dashboard import summary as summary_service
from portal.services.scores import outlook as outlook_service

bp = Blueprint("dashboard", __name__)


@bp.route("/")
def index():
    try:
        scope = dashboard_service.resolve_scope(current_user, request.args.get("store"))
    except dashboard_service.UnknownStore:
        abort(404)
    data = dashboard_service.summary(scope)  # live: customers, stock, campaign
    outlook = lines = None
    if data["customers"]["total"]:
        lines = summary_service.for_scope(scope)  # stored after scoring: revenue, revenue by tier, cohorts
        if scope.store is not None or scope.can_switch:
            outlook = outlook_service.for_scope(scope.store_id)
    return render_template(
        "dashboard/index.html",
        scope=scope,
        outlook=outlook,
        lines=lines,
        revenue=lines and lines["revenue"],
        revenue_chart=lines and lines["revenue_chart"],
        cohorts=lines and lines["cohorts"],
        **data,
    )


@bp.route("/jobs/<job_id>")
def job_status(job_id: str):
    """JSON status of a background job, polled by progress bars; another store's job is a 404 like an absent one."""
    job = jobs.get_for(job_id, current_user)
    if job is None:
        abort(404)
    return jsonify(jobs.as_dict(job))
