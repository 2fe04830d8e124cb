"""Forms of the automations pages (each POST carries its CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DecimalField, HiddenField, IntegerField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange

from portal.services.flows import kinds


class SwitchForm(FlaskForm):
    enabled = HiddenField()


class FlowForm(FlaskForm):
    """A flow's settings; the thresholds of its kind are added as fields by ``for_kind``."""

    template = TextAreaField(
        "Message",
        validators=[DataRequired(), Length(max=1000)],
        description="Placeholders: {first_name} {tier} {reward} {code} {store} {expires}, and {product} "
        "(the dead-stock item, bundle offer). The sender's name and “Reply STOP to opt out” are added.",
    )
    cooldown_days = IntegerField(
        "Cooldown (days)",
        validators=[InputRequired(), NumberRange(0, 3650)],
        description="At most one message per customer from this flow in this many days.",
    )
    control_share = DecimalField(
        "Control group (%)",
        places=1,
        validators=[InputRequired(), NumberRange(0, 50)],
        description="Entrants held out at random and never messaged: the measure of what the flow earns.",
    )
    daily_limit = IntegerField(
        "Daily limit", validators=[InputRequired(), NumberRange(0, 1_000_000)], description="Entries per day at most."
    )
    expiry_days = IntegerField(
        "Offer good for (days)", validators=[InputRequired(), NumberRange(1, 365)], description="Fills {expires}."
    )


def for_kind(kind: str, formdata=None, flow=None) -> FlowForm:
    """The settings form with one number field per threshold of the flow's kind."""

    class KindForm(FlowForm):
        pass

    for p in kinds.KINDS[kind].params:
        field = (
            IntegerField(p.label, validators=[InputRequired(), NumberRange(p.min, p.max)])
            if p.integer
            else DecimalField(p.label, places=2, validators=[InputRequired(), NumberRange(p.min, p.max)])
        )
        setattr(KindForm, f"param_{p.key}", field)
    form = KindForm(formdata=formdata)
    if flow is not None and formdata is None:
        form.template.data = flow.template
        form.cooldown_days.data = flow.cooldown_days
        form.control_share.data = round(flow.control_share * 100, 1)
        form.daily_limit.data = flow.daily_limit
        form.expiry_days.data = flow.expiry_days
        values = kinds.params_of(kind, flow.params)
        for p in kinds.KINDS[kind].params:
            getattr(form, f"param_{p.key}").data = values[p.key]
    return form


def param_fields(form: FlowForm, kind: str) -> list:
    return [getattr(form, f"param_{p.key}") for p in kinds.KINDS[kind].params]
