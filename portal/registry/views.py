"""The Models page: what each model knows, when it was trained, its metrics, and train buttons."""
from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select

from portal import jobs, model_store
from portal.extensions import db
from portal.models import Job, ModelRecord
from portal.security import roles_required
from portal.services import training

bp = Blueprint("registry", __name__)

FILES = {"segmentation": ("CS_model.pkl", "CS_scalers.pkl"), "churn": ("churn_model.pkl",),
         "clv": ("clv_model.pkl",), "bundles": ()}
TITLES = {"segmentation": "Loyalty tiers (K-Means)", "churn": "Churn risk (classifier)",
          "clv": "Lifetime value (BG/NBD + Gamma-Gamma)", "bundles": "Dead-stock bundles (association rules)"}


@bp.route("/models")
def index():
    try:
        status = model_store.status()
    except model_store.ModelUnavailable as exc:
        status, problem = {}, str(exc)
    else:
        problem = None
    records = {r.name: r for r in db.session.scalars(select(ModelRecord).where(ModelRecord.active.is_(True)))}
    cards = []
    for name in training.MODELS:
        files = [status[f] for f in FILES[name] if f in status]
        cards.append({"name": name, "title": TITLES[name], "record": records.get(name), "files": files,
                      "entry": files[0] if files else None,
                      "broken": [f for f in files if f["state"] != "ok"]})
    running = db.session.scalars(select(Job).where(Job.func.like("portal.services.training.%"))
                                 .order_by(Job.created_at.desc()).limit(1)).first()
    if running is not None:  # training is chain-wide: admins and its starter see it
        running = jobs.get(running.id) if jobs.visible_to(running, current_user) else None
    return render_template("registry/index.html", cards=cards, problem=problem, job=running)


@bp.route("/models/train/<name>", methods=["POST"])
@roles_required("admin")
def train(name: str):
    if name not in (*training.MODELS, "all"):
        abort(404)
    job = jobs.enqueue(f"portal.services.training.train_{name}", f"Train {name}", current_user.email,
                       scope_store_id=None)  # models are trained on every store's data
    flash(f"Training {name} started.", "info")
    return redirect(url_for("registry.index", job=job.id))
