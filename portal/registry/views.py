"""Models pages."""
from flask import Blueprint, render_template

bp = Blueprint("registry", __name__)


@bp.route("/models")
def index():
    return render_template("placeholders/empty.html", title="Models", text="No model trained yet: run flask train all after importing purchases.")
