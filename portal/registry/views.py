"""The Models page: what each model knows, when it was trained, its metrics, and train buttons."""

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user

from portal.security import roles_required
from portal.services.scores import model_info

bp = Blueprint("registry", __name__)


@bp.route("/models")
def index():
    cards, problem = model_info.model_cards()
    return render_template(
        "registry/index.html", cards=cards, problem=problem, job=model_info.latest_training(current_user)
    )


@bp.route("/models/train/<name>", methods=["POST"])
@roles_required("admin")
def train(name: str):
    if name not in model_info.TRAIN_JOBS:
        abort(404)
    job = model_info.start_training(name, current_user)  # models are trained on every store's data
    flash(f"Training {name} started.", "info")
    return redirect(url_for("registry.index", job=job.id))
