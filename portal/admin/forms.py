"""Admin forms: users and stores (settings are built from their specs in the view)."""

from zoneinfo import available_timezones

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from portal.models import LEAST_PRIVILEGED_ROLE, ROLES

TIMEZONES = sorted(available_timezones())


class UserCreateForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    # Least privilege by default: the admin picks a more powerful role on purpose.
    role = SelectField("Role", choices=[SelectChoice(r, r) for r in ROLES], default=LEAST_PRIVILEGED_ROLE)
    store_id = SelectField("Store", coerce=int, validators=[Optional()])


class UserEditForm(FlaskForm):
    role = SelectField("Role", choices=[SelectChoice(r, r) for r in ROLES])
    store_id = SelectField("Store", coerce=int, validators=[Optional()])
    active = BooleanField("Active")


class StoreForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    timezone = StringField(
        "Time zone", default="UTC", validators=[DataRequired()], description="IANA name, e.g. America/New_York"
    )
    currency = StringField("Currency", default="USD", validators=[DataRequired(), Length(min=3, max=3)])
    phone_region = StringField(
        "Phone region",
        default="US",
        validators=[DataRequired(), Length(min=2, max=2)],
        description="Default country for phone numbers without +country code",
    )
    sender_name = StringField("SMS sender name", validators=[Length(max=40)])
    contact_line = StringField("Contact line for HELP replies", validators=[Length(max=200)])

    def validate_timezone(self, field):
        if field.data not in TIMEZONES:
            raise ValidationError("Unknown time zone: use an IANA name like Europe/London.")

    def validate_currency(self, field):
        if not field.data.isalpha():
            raise ValidationError("Use a three-letter currency code like USD.")
        field.data = field.data.upper()

    def validate_phone_region(self, field):
        import phonenumbers

        field.data = field.data.upper()
        if field.data not in phonenumbers.SUPPORTED_REGIONS:
            raise ValidationError("Unknown region: use a two-letter country code like US.")
