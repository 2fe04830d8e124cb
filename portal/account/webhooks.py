"""/admin/webhooks: admins register outgoing webhook URLs (secret shown once) and read the delivery log."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectMultipleField, StringField, URLField, widgets
from wtforms.validators import DataRequired, Length

from portal.security import roles_required
from portal.services import webhooks_out

bp = Blueprint("webhooks_admin", __name__)


class EndpointForm(FlaskForm):
    url = URLField("URL", validators=[DataRequired(), Length(max=500)], description="Where the events are POSTed.")
    description = StringField("Description", validators=[Length(max=200)])
    events = SelectMultipleField(
        "Events",
        choices=[SelectChoice(name, f"{name} — {meaning}") for name, meaning in webhooks_out.EVENTS.items()],
        option_widget=widgets.CheckboxInput(),
        widget=widgets.ListWidget(prefix_label=False),
    )


@bp.route("/admin/webhooks", methods=["GET", "POST"])
@roles_required("admin")
def index():
    """Endpoints, a form to add one (its signing secret shown once in this response), and the delivery log."""
    form = EndpointForm()
    secret = None
    if form.validate_on_submit():
        try:
            endpoint, secret = webhooks_out.create(form.url.data, form.events.data, form.description.data, current_user)
        except webhooks_out.EndpointError as exc:
            form.url.errors.append(str(exc))
        else:
            flash(
                f"Webhook to {endpoint.url} registered. Copy its signing secret now: it is not shown again.", "success"
            )
            form = EndpointForm(formdata=None)
    return render_template(
        "api/webhooks.html",
        form=form,
        secret=secret,
        endpoints=webhooks_out.endpoints(),
        deliveries=webhooks_out.recent_deliveries(),
        action_form=FlaskForm(),
    )


@bp.route("/admin/webhooks/<int:endpoint_id>/deactivate", methods=["POST"])
@roles_required("admin")
def deactivate(endpoint_id: int):
    if not FlaskForm().validate_on_submit():
        abort(400)
    endpoint = webhooks_out.deactivate(endpoint_id, current_user)
    if endpoint is None:
        abort(404)
    flash(f"Webhook to {endpoint.url} deactivated: nothing more is sent to it.", "success")
    return redirect(url_for("webhooks_admin.index"))
