"""The dashboard: the store's headline numbers, each linking to the list behind it."""
from flask import Blueprint, render_template
from flask_login import current_user
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Customer
from portal.services import customers as customer_service

bp = Blueprint("dashboard", __name__)


@bp.route("/")
def index():
    base = customer_service.filtered_customers({}, current_user).subquery()
    total = db.session.scalar(select(func.count()).select_from(base))
    tiers = dict(db.session.execute(select(base.c.tier, func.count()).group_by(base.c.tier)).all())
    bands = dict(db.session.execute(select(base.c.churn_band, func.count()).group_by(base.c.churn_band)).all())
    return render_template("dashboard/index.html", total=total, tiers=tiers, bands=bands)


@bp.route("/jobs/<job_id>")
def job_status(job_id: str):
    """JSON status of a background job, polled by progress bars."""
    from flask import abort, jsonify

    from portal import jobs

    job = jobs.get(job_id)
    if job is None:
        abort(404)
    return jsonify(jobs.as_dict(job))
