"""Campaigns pages."""
from flask import Blueprint, render_template

bp = Blueprint("campaigns", __name__)


@bp.route("/campaigns")
def index():
    return render_template("placeholders/empty.html", title="Campaigns", text="No campaigns yet.")
