"""The mail preferences form."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectChoice, SelectField
from wtforms.validators import InputRequired

from portal.services.mail.preferences import LABELS, WEEKDAYS


class PreferencesForm(FlaskForm):
    digest = BooleanField(LABELS["digest"])
    digest_weekday = SelectField(
        "Digest day",
        coerce=int,
        choices=[SelectChoice(i, day) for i, day in enumerate(WEEKDAYS)],
        validators=[InputRequired()],
    )
    digest_hour = SelectField(
        "Digest hour (your store's time)",
        coerce=int,
        choices=[SelectChoice(h, f"{h:02d}:00") for h in range(24)],
        validators=[InputRequired()],
    )
    risk = BooleanField(LABELS["risk"])
    failures = BooleanField(LABELS["failures"])
    paused = BooleanField(LABELS["paused"])
    optouts = BooleanField(LABELS["optouts"])
