"""Forms on the bundles page: the mining parameters (in percent, as the page speaks) and the lookup."""

from flask_wtf import FlaskForm
from wtforms import FloatField, StringField
from wtforms.validators import InputRequired, Length, NumberRange, StopValidation, ValidationError

from portal.services.settings import BY_KEY


def _range(key: str, scale: float) -> NumberRange:
    """The setting's own limits (settings.py), in the form's unit."""
    spec = BY_KEY[key]
    low, high = spec.min * scale, spec.max * scale
    return NumberRange(min=low, max=high, message=f"Must be between {low:g} and {high:g}.")


class NumberField(FloatField):
    """A number as people type it: "0.5", "0,5" or "0.5 %"; one clear message when it is not one."""

    def process_formdata(self, valuelist):
        if not valuelist or not valuelist[0].strip():
            self.data = None
            return
        try:
            self.data = float(valuelist[0].replace("%", "").replace(",", ".").strip())
        except ValueError:
            self.data = None
            raise ValueError("Enter a number, e.g. 0.5.") from None


def _parsed(form, field) -> None:
    """Stop here when the value could not be read (its message is already shown)."""
    if field.data is None:
        raise StopValidation()


def _number(label: str, key: str, scale: float, description: str) -> NumberField:
    return NumberField(
        label, validators=[InputRequired("Enter a number."), _parsed, _range(key, scale)], description=description
    )


class MiningForm(FlaskForm):
    """Mine again with these thresholds; percentages here, fractions in the settings and the model."""

    min_baskets = _number(
        "Minimum baskets",
        "bundles.min_baskets",
        1,
        "Baskets that must hold the product and the dead-stock item together. It replaces the minimum "
        "support (a share of baskets): the original 10 % rarely finds anything in a store with hundreds of products.",
    )
    min_confidence = _number(
        "Minimum confidence (%)",
        "bundles.min_confidence",
        100,
        "Of the baskets with the popular product(s), the share that also take the dead stock.",
    )
    min_lift = _number(
        "Minimum lift",
        "bundles.min_lift",
        1,
        "How many times more often than chance they are bought together (1 = chance).",
    )
    dead_stock_ratio = _number(
        "Dead stock: sold ratio below (%)",
        "bundles.dead_stock_ratio",
        100,
        "Units sold / initial stock below this counts as dead stock.",
    )

    def validate_min_baskets(self, field) -> None:
        if field.data is not None and field.data != int(field.data):
            raise ValidationError("Enter a whole number of baskets, e.g. 10.")

    def job_kwargs(self) -> dict:
        """The service's keyword arguments (fractions)."""
        return {
            "min_baskets": int(self.min_baskets.data),
            "min_confidence": round(self.min_confidence.data / 100, 10),
            "min_lift": float(self.min_lift.data),
            "dead_stock_ratio": round(self.dead_stock_ratio.data / 100, 10),
        }

    def fill(self, params: dict) -> None:
        """Show ``params`` (fractions, as stored) in the fields."""
        self.min_baskets.data = int(params["min_baskets"])
        self.min_confidence.data = round(params["min_confidence"] * 100, 8)
        self.min_lift.data = params["min_lift"]
        self.dead_stock_ratio.data = round(params["dead_stock_ratio"] * 100, 8)


class LookupForm(FlaskForm):
    """ "I am selling X — what dead stock fits with it?" (a GET form: reading only, no CSRF needed)."""

    class Meta:
        csrf = False

    product = StringField(
        "I am selling", validators=[Length(max=300)], description="A product name or id, e.g. Espresso Beans."
    )
