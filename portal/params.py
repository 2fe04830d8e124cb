"""Reading numbers users typed into query strings and forms, safely."""

from __future__ import annotations

from wtforms import IntegerField

MAX_ID_DIGITS = 9  # fits every database integer column; longer is never a real id


def parse_id(text) -> int | None:
    """A small non-negative integer from user input, or None.

    ``str.isdigit`` accepts '²' and 400-digit numbers, which then fail in ``int()`` or overflow the
    database; this accepts only up to 9 ASCII digits.
    """
    value = str(text if text is not None else "").strip()
    if value.isascii() and value.isdigit() and len(value) <= MAX_ID_DIGITS:
        return int(value)
    return None


class DaysField(IntegerField):
    """A whole number typed into a form (days, a percentage), with one clear message when it is not one.

    More than 6 digits is refused before ``int()``: no day count or share needs more, and huge values
    overflow floats and timedeltas further on.
    """

    def process_formdata(self, valuelist):
        if not valuelist or not str(valuelist[0]).strip():
            self.data = None
            return
        text = str(valuelist[0]).strip()
        if len(text.lstrip("+-")) > 6:
            self.data = None
            raise ValueError("That number is too large.")
        try:
            self.data = int(text)
        except ValueError:
            self.data = None
            raise ValueError("Enter a whole number of days, e.g. 60.") from None
