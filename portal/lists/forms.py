"""Forms of the lists area."""

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length


class SegmentForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[DataRequired(message="Give the segment a name."), Length(max=120)],
        description="E.g. 'Gold customers at high risk'.",
    )
    list_name = SelectField("List", choices=[])
    query = StringField(
        "Filter",
        validators=[Length(max=2000)],
        description="The list's query string, e.g. band=High&tier=Gold (empty: everyone).",
    )
