"""Jinja filters and globals: one way to show money, numbers and dates everywhere."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from flask import Flask, current_app
from flask_login import current_user

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$", "JPY": "¥", "INR": "₹"}


def money(value, store=None, currency: str | None = None, digits: int = 2) -> str:
    """Format an amount in the store's currency, e.g. $1,234.50 (negative with a minus).

    ``digits`` is the number of decimals; unit prices such as an SMS segment ($0.0083) need more
    than two. A store without a currency (or none given) is shown in USD, the default currency.
    """
    if value is None or value == "":
        return "—"
    code = currency or (getattr(store, "currency", None) if store is not None else None) or "USD"
    symbol = SYMBOLS.get(code, code + " ")
    amount = Decimal(str(value))
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{abs(amount):,.{digits}f}"


def number(value, digits: int = 0) -> str:
    """A count or measure with thousands separators: 3,081; with ``digits`` decimals: 1,234.5."""
    if value is None or value == "":
        return "—"
    value = float(value)
    if digits == 0 and value == int(value):
        return f"{int(value):,}"
    return f"{value:,.{digits or 2}f}"


def percent(value, digits: int = 0) -> str:
    """A share (0.1) as a percentage (10 %), the way every page writes shares."""
    return "—" if value is None else f"{float(value) * 100:.{digits}f} %"


def plural(n, singular: str, plural_form: str | None = None) -> str:
    """The word that fits a count: plural(1, 'rule') is 'rule', plural(3, 'rule') is 'rules'."""
    try:
        one = n is not None and abs(float(n)) == 1
    except (TypeError, ValueError):
        one = False
    return singular if one else (plural_form or singular + "s")


def count(n, singular: str, plural_form: str | None = None) -> str:
    """A count with its noun: count(3081, 'message') is '3,081 messages', count(1, 'rule') '1 rule'."""
    return f"{number(n)} {plural(n, singular, plural_form)}"


# Sentences written by services and preprocessing/ (bundle pitches, churn reasons) carry bare numbers:
# "5906 baskets", "only 15.49 spent in total". preprocessing/ knows no currency, so the page formats them.
_COUNT_IN_TEXT = re.compile(r"(?<![\w.,:/-])(\d{4,})(?=\s+(?:baskets|purchases|customers|messages|lines|days|units)\b)")
_SPENT_IN_TEXT = re.compile(r"(?<![\w.,$€£¥₹])(-?\d[\d,]*(?:\.\d+)?)(?=\s+spent\b)")


def prose(text, store=None, currency: str | None = None) -> str:
    """Format the numbers inside a sentence from a service: counts get separators, spend the currency."""
    if text is None:
        return ""
    text = _COUNT_IN_TEXT.sub(lambda m: number(int(m.group(1))), str(text))
    return _SPENT_IN_TEXT.sub(lambda m: money(m.group(1).replace(",", ""), store, currency), text)


def _user_tz() -> ZoneInfo:
    try:
        store = current_user.store if current_user.is_authenticated else None
    except Exception:  # outside a request
        store = None
    try:
        return ZoneInfo(store.timezone) if store else ZoneInfo("UTC")
    except Exception:
        return ZoneInfo("UTC")


def fmt_datetime(value, tz=None) -> str:
    """A UTC timestamp in the user's store time zone (UTC for admins), e.g. 2026-11-21 14:05 EST.

    ``tz`` (a ZoneInfo or a zone name), e.g. a campaign's store zone: the value is a stored UTC
    timestamp (naive when SQLite returns it) shown in that zone, labelled, whoever looks at it.
    """
    if value is None:
        return "—"
    if isinstance(value, datetime):
        if tz is not None:
            try:
                zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(str(tz))
            except Exception:
                zone = ZoneInfo("UTC")
            utc = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
            return utc.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        if value.tzinfo is None:
            return value.strftime("%Y-%m-%d %H:%M")  # store-local wall time, as imported
        local = value.astimezone(_user_tz())
        return local.strftime("%Y-%m-%d %H:%M %Z")
    return str(value)


def fmt_date(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_user_tz())
        return value.strftime("%Y-%m-%d")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def register(app: Flask, nav: list[tuple[str, str]]) -> None:
    app.jinja_env.filters.update(
        money=money,
        number=number,
        percent=percent,
        plural=plural,
        count=count,
        prose=prose,
        datetime=fmt_datetime,
        date=fmt_date,
    )

    @app.context_processor
    def globals_():
        dry = not (current_app.config.get("TWILIO_ACCOUNT_SID") and current_app.config.get("TWILIO_AUTH_TOKEN"))
        return {"nav_items": nav, "sms_dry_run": dry}
