"""Forms of the account area: creating an API token."""

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from portal.params import DaysField
from portal.services.api_tokens import MAX_DAYS


class TokenForm(FlaskForm):
    name = StringField(
        "Name", validators=[DataRequired(), Length(max=80)], description="What uses it, e.g. 'Till 3' or 'Web shop'."
    )
    days = DaysField(
        "Valid for (days)",
        default=365,
        validators=[Optional(), NumberRange(min=1, max=MAX_DAYS)],
        description="Empty: until revoked.",
    )
