"""Imports pages."""
from flask import Blueprint, render_template

bp = Blueprint("imports", __name__)


@bp.route("/imports")
def index():
    return render_template("placeholders/empty.html", title="Imports", text="No imports yet.")
