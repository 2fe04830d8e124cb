"""Jinja filters and globals: one way to show money, numbers and dates everywhere."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from flask import Flask, current_app
from flask_login import current_user

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$", "JPY": "¥", "INR": "₹"}


def money(value, store=None, currency: str | None = None) -> str:
    """Format an amount in the store's currency, e.g. $1,234.50 (negative with a minus)."""
    if value is None or value == "":
        return "—"
    code = currency or (store.currency if store is not None else None) or "USD"
    symbol = SYMBOLS.get(code, code + " ")
    amount = Decimal(str(value))
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{abs(amount):,.2f}"


def number(value, digits: int = 0) -> str:
    if value is None or value == "":
        return "—"
    value = float(value)
    if digits == 0 and value == int(value):
        return f"{int(value):,}"
    return f"{value:,.{digits or 2}f}"


def percent(value, digits: int = 0) -> str:
    return "—" if value is None else f"{float(value) * 100:.{digits}f} %"


def _user_tz() -> ZoneInfo:
    try:
        store = current_user.store if current_user.is_authenticated else None
    except Exception:  # outside a request
        store = None
    try:
        return ZoneInfo(store.timezone) if store else ZoneInfo("UTC")
    except Exception:
        return ZoneInfo("UTC")


def fmt_datetime(value) -> str:
    """A UTC timestamp in the user's store time zone (UTC for admins), e.g. 2026-11-21 14:05 EST."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
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
    app.jinja_env.filters.update(money=money, number=number, percent=percent,
                                 datetime=fmt_datetime, date=fmt_date)

    @app.context_processor
    def globals_():
        dry = not (current_app.config.get("TWILIO_ACCOUNT_SID") and current_app.config.get("TWILIO_AUTH_TOKEN"))
        return {"nav_items": nav, "sms_dry_run": dry}
