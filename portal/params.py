"""Reading numbers users typed into query strings and forms, safely."""

from __future__ import annotations

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
