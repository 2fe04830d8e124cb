"""Forms of the campaign pages (each POST carries its CSRF token): the builder, actions, redemption."""

from __future__ import annotations

from datetime import datetime

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    HiddenField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from portal.params import DaysField
from portal.services.campaigns import campaigns as campaign_service
from portal.services.customers.customers import LIFECYCLES
from portal.services.settings import BANDS, TIERS

#: Builder fields that are list filters (the same keys as every list page and --filter on the CLI).
FILTER_FIELDS = (
    "band",
    "lifecycle",
    "tier",
    "store",
    "min_recency",
    "max_recency",
    "days_since_sms",
    "q",
    "consent",
    "include_lost",
    "customer",
)


class ActionForm(FlaskForm):
    """A confirmed button (send, cancel): nothing to fill in but the CSRF token."""


class SendForm(FlaskForm):
    """The confirm step's send button; ``expected`` is the number of messages the user was shown."""

    expected = HiddenField()


class BuilderForm(FlaskForm):
    """Audience, message, control group, schedule and expiry of a new campaign.

    The view fills ``segment.choices`` and ``store.choices``; ``time_zone`` (a ZoneInfo) is the
    store's zone in which ``send_at`` and ``expires`` are read.
    """

    name = StringField("Campaign name", validators=[DataRequired("Give the campaign a name."), Length(max=120)])
    segment = SelectField(
        "Saved segment",
        choices=[SelectChoice("", "None: use the filters below")],
        validate_choice=False,
        description="A saved segment replaces the filters below.",
    )
    band = SelectField(
        "Churn band", choices=[SelectChoice("", "Any band")] + [SelectChoice(b, f"{b} risk") for b in BANDS]
    )
    lifecycle = SelectField(
        "Status",
        choices=[SelectChoice("", "Any status")] + [SelectChoice(s, s) for s in LIFECYCLES],
        default="",
    )
    include_lost = BooleanField(
        "Include lost customers",
        description="Lost customers (gone for over a year, unlikely to return) are left out unless ticked.",
    )
    tier = SelectField(
        "Tier",
        choices=[SelectChoice("", "Any tier")]
        + [SelectChoice(t, t) for t in TIERS]
        + [SelectChoice("none", "No tier")],
    )
    store = SelectField("Store", choices=[SelectChoice("", "All stores")])
    min_recency = DaysField("Days since last purchase: at least", validators=[Optional(), NumberRange(0, 36500)])
    max_recency = DaysField("Days since last purchase: at most", validators=[Optional(), NumberRange(0, 36500)])
    days_since_sms = DaysField(
        "Not messaged in the last (days)",
        validators=[Optional(), NumberRange(0, 3650)],
        description="Leave empty to rely on the frequency cap alone.",
    )
    q = HiddenField()
    consent = HiddenField()
    customer = HiddenField()  # one customer by external id ("Send an offer" on the customer page)
    template = TextAreaField(
        "Message",
        validators=[DataRequired("Write the message."), Length(max=1000)],
        description="Placeholders: "
        + ", ".join("{%s}" % p for p in campaign_service.PLACEHOLDERS)
        + ". The store's sender name and “Reply STOP to opt out” are added when missing.",
    )
    control = DaysField(
        "Control group (% of the audience, never messaged)",
        validators=[InputRequired("Enter a share between 0 and 90."), NumberRange(0, 90)],
    )
    when = RadioField(
        "When",
        choices=[SelectChoice("now", "As soon as it is confirmed"), SelectChoice("later", "At a date and time")],
        default="now",
    )
    send_at = DateTimeLocalField("Send at (store's local time)", format="%Y-%m-%dT%H:%M", validators=[Optional()])
    expires = DateField(
        "Offer expires (end of the day, store's local time)",
        validators=[InputRequired("Give the offer an expiry date.")],
    )

    time_zone = None  # set by the view
    now: datetime | None = None  # set by the view (tests freeze it)

    def validate_template(self, field):
        try:
            campaign_service.validate_template(field.data or "")
        except campaign_service.CampaignError as exc:
            raise ValidationError(str(exc)) from None

    def validate_max_recency(self, field):
        if field.data is not None and self.min_recency.data is not None and field.data < self.min_recency.data:
            raise ValidationError("“At most” must not be below “at least”.")

    def local_now(self) -> datetime:
        now = self.now or datetime.now().astimezone()
        return now.astimezone(self.time_zone) if self.time_zone else now

    def validate_send_at(self, field):
        if self.when.data != "later":
            return
        if field.data is None:
            raise ValidationError("Give the local date and time to send at (or choose “as soon as it is confirmed”).")
        if field.data.replace(tzinfo=self.time_zone) <= self.local_now():
            raise ValidationError("This time has passed; choose a moment in the future.")

    def validate_expires(self, field):
        if field.data is None:
            return
        start = self.send_at.data.date() if self.when.data == "later" and self.send_at.data else self.local_now().date()
        if field.data < start:
            raise ValidationError("The offer would expire before the messages go out.")

    def filter_params(self) -> dict[str, str]:
        """The audience as list filters, e.g. {"band": "High", "min_recency": "60"} (empty ones left out)."""
        params = {}
        for key in FILTER_FIELDS:
            value = getattr(self, key).data
            if value is True:  # a ticked box, as the lists' query string spells it
                params[key] = "1"
            elif value not in (None, "", False):
                params[key] = str(value).strip()
        return {k: v for k, v in params.items() if v}


class RedeemForm(FlaskForm):
    """Staff redeem a coupon code on the customer page."""

    customer_id = HiddenField(validators=[DataRequired()])
    code = StringField(
        "Coupon code", validators=[DataRequired("Type the code from the customer's message."), Length(max=40)]
    )
    next = HiddenField()


class TemplateForm(FlaskForm):
    """An admin's version of one library template, for every store (``store`` empty) or one store."""

    purpose = HiddenField(validators=[DataRequired()])
    store = HiddenField()
    body = TextAreaField(
        "Message",
        validators=[DataRequired("Write the message."), Length(max=1000, message="At most 1,000 characters.")],
    )

    def validate_body(self, field):
        try:
            campaign_service.validate_template(field.data or "")
        except campaign_service.CampaignError as exc:
            raise ValidationError(str(exc)) from None


class TestSendForm(FlaskForm):
    """Send one rendered message (with a TEST coupon) to the user's own phone before sending a campaign."""

    phone = StringField(
        "Your mobile number",
        validators=[DataRequired("Type your own mobile number."), Length(max=32)],
        description="The message goes to this number only, with a TEST coupon that cannot be redeemed.",
    )
