"""The in-app help page: what each number means, and what the models know and when they were trained."""

from __future__ import annotations

from flask import Blueprint, render_template

from portal.services import settings as settings_service
from portal.services.scores import model_info
from portal.services.scores import tiers as tier_service

bp = Blueprint("help", __name__)


@bp.route("/help")
def index():
    values = settings_service.all_values()
    return render_template(
        "help/index.html", models=model_info.model_facts(), values=values, bar=tier_service.bar_rule(values)
    )
