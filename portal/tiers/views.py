"""Loyalty tiers pages."""
from flask import Blueprint, render_template

bp = Blueprint("tiers", __name__)


@bp.route("/tiers")
def index():
    return render_template("placeholders/empty.html", title="Loyalty tiers", text="No segmentation model trained yet: import purchases, then train it on the Models page or with flask train segmentation.")
