"""Forms on the customer page."""

from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional, ValidationError


class ConsentForm(FlaskForm):
    status = SelectField(
        "SMS consent", choices=[SelectChoice("opted_in", "Opted in"), SelectChoice("opted_out", "Opted out")]
    )
    effective = DateField(
        "Date given",
        validators=[Optional()],
        description="When the customer gave or withdrew consent (default: today).",
    )
    source = StringField(
        "Source",
        validators=[Length(max=40)],
        description="E.g. 'signed form at the till', 'phone call'. Required for an opt-in.",
    )

    def validate_source(self, field):
        if self.status.data == "opted_in" and not (field.data or "").strip():
            raise ValidationError("Say where the opt-in came from.")
