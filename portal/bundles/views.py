"""Bundles pages."""
from flask import Blueprint, render_template

bp = Blueprint("bundles", __name__)


@bp.route("/bundles")
def index():
    return render_template("placeholders/empty.html", title="Bundles", text="No bundle rules yet: import purchases and a stock file, then train bundles.")
