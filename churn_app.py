"""The churn-risk & retention blueprint: views only; churn logic lives in portal/services."""
from flask import Blueprint, render_template

bp = Blueprint("churn", __name__)


@bp.route("/churn")
def index():
    return render_template("placeholders/empty.html", title="Churn risk",
                           text="No churn model trained yet: import purchases, then train it with flask train churn.")
