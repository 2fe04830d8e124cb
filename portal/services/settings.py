"""Typed settings with defaults in code; an admin's overrides live in the ``settings`` table."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from portal.extensions import db
from portal.models import Setting
from portal.services import audit
from preprocessing.segmentation import TIER_NAMES

TIERS = TIER_NAMES  # best first; the names segmentation gives its clusters
BANDS = ("High", "Medium", "Low")
BAR_MODES = ("derived", "fixed")  # tiers.bar: from the store's data, or tier.min_frequency / tier.min_monetary


@dataclass(frozen=True)
class Spec:
    """One setting: its type, default, limits and where it shows on the settings page."""

    key: str
    type: str  # int | float | str | text | time | bool
    default: Any
    group: str
    label: str
    help: str = ""
    min: float | None = None
    max: float | None = None
    placeholders: tuple[str, ...] = field(default_factory=tuple)


SPECS: tuple[Spec, ...] = (
    Spec(
        "tiers.bar",
        "str",
        "derived",
        "Tiers",
        "Eligibility bar",
        "“derived”: from the store's own data at each training (see tiers.share); “fixed”: the two numbers below.",
        min=1,
        max=10,
    ),
    Spec(
        "tiers.share",
        "float",
        0.25,
        "Tiers",
        "Derived bar: share of the last 12 months' customers above each part of the bar",
        "The bar is the purchases and the spend that this share of the customers who bought in the last "
        "12 months reach; either one unlocks a tier.",
        min=0.01,
        max=0.99,
    ),
    Spec(
        "tiers.retention_months",
        "int",
        12,
        "Tiers",
        "Tier retention period (months)",
        "A tier is kept this long after the last purchase; a customer idle longer loses it at the next review.",
        min=1,
        max=120,
    ),
    Spec("tier.min_frequency", "int", 15, "Tiers", "Purchases needed for a tier", min=1, max=100000),
    Spec(
        "tier.min_monetary",
        "float",
        30000.0,
        "Tiers",
        "Spend needed for a tier",
        "In the store's currency; a customer needs the purchases OR the spend.",
        min=0,
        max=1e9,
    ),
    Spec("tier.k", "int", 4, "Tiers", "Number of clusters (K-Means k)", min=2, max=8),
    *(
        Spec(f"reward.{t}", "str", d, "Tiers", f"{t} reward", min=1, max=200)
        for t, d in (
            ("Platinum", "25% discount + VIP concierge access"),
            ("Gold", "20% discount + free shipping"),
            ("Silver", "15% discount or birthday bonus"),
            ("Bronze", "points-based rewards or 10% discount"),
        )
    ),
    Spec(
        "tier.message.progress",
        "text",
        "{purchases} more purchases or {spend} more to unlock {next_tier}: {reward}",
        "Tiers",
        "Message for customers below the bar",
        placeholders=("purchases", "spend", "next_tier", "reward"),
    ),
    Spec(
        "tier.message.next",
        "text",
        "Spend {spend} more to reach {next_tier}: {reward}",
        "Tiers",
        "Message for tier members below Platinum",
        placeholders=("spend", "next_tier", "reward"),
    ),
    Spec(
        "tier.message.top",
        "text",
        "You are in our top tier: {reward}",
        "Tiers",
        "Message for Platinum members",
        placeholders=("reward",),
    ),
    Spec("churn.horizon_days", "int", 90, "Churn", "Churn horizon (days without a purchase)", min=7, max=730),
    Spec("churn.high", "float", 0.7, "Churn", "High band above", min=0.01, max=0.99),
    Spec("churn.low", "float", 0.3, "Churn", "Low band below", min=0.01, max=0.99),
    Spec(
        "churn.action.High",
        "str",
        "Personal retention offer by SMS now",
        "Churn",
        "Action for High risk",
        min=1,
        max=200,
    ),
    Spec(
        "churn.action.Medium",
        "str",
        "Targeted campaign or loyalty reminder",
        "Churn",
        "Action for Medium risk",
        min=1,
        max=200,
    ),
    Spec("churn.action.Low", "str", "Standard engagement", "Churn", "Action for Low risk", min=1, max=200),
    Spec("bundles.dead_stock_ratio", "float", 0.6, "Bundles", "Dead stock: sold ratio below", min=0.01, max=1),
    Spec("bundles.min_confidence", "float", 0.05, "Bundles", "Minimum confidence", min=0.0, max=1),
    Spec("bundles.min_lift", "float", 1.0, "Bundles", "Minimum lift", min=0.0, max=1000),
    Spec(
        "bundles.min_baskets",
        "int",
        10,
        "Bundles",
        "Minimum baskets behind a suggestion",
        "Baskets that must hold the product and the dead-stock item together. Mining uses this instead of "
        "the minimum support (a share of baskets), whatever the store's size.",
        min=1,
        max=100_000,
    ),
    Spec(
        "imports.stale_days",
        "int",
        180,
        "Imports",
        "Stale transactions file: ends this many days before the store's data",
        "Such a file needs an explicit confirmation on the mapping page (flask import: --stale-ok).",
        min=1,
        max=36500,
    ),
    Spec("sms.quiet_start", "time", "21:00", "SMS", "Quiet hours start (store local time)"),
    Spec("sms.quiet_end", "time", "08:00", "SMS", "Quiet hours end (store local time)"),
    Spec(
        "sms.frequency_cap_days",
        "int",
        7,
        "SMS",
        "At most one message per customer per N days (campaigns and automations, dry-runs included)",
        min=0,
        max=365,
    ),
    Spec("sms.rate_per_second", "float", 5.0, "SMS", "Send rate (messages per second)", min=0.1, max=100),
    Spec("sms.price_per_segment", "float", 0.0083, "SMS", "Price per SMS segment", min=0, max=10),
    Spec("sms.control_share", "float", 0.1, "SMS", "Default control-group share", min=0, max=0.9),
    Spec("sms.result_days", "int", 30, "SMS", "Days after sending to measure purchases", min=1, max=365),
    Spec(
        "sms.monthly_budget",
        "float",
        0.0,
        "SMS",
        "Monthly SMS budget per store (0: none)",
        "Segments sent this month × the price per segment, dry-runs included. When a store reaches it, its "
        "automations pause until next month and admins see it on the dashboard; campaigns are not stopped.",
        min=0,
        max=1_000_000,
    ),
    Spec("clv.discount_rate", "float", 0.0, "CLV", "Annual discount rate for CLV", min=0, max=1),
    Spec(
        "mail.valuable_share",
        "float",
        0.2,
        "E-mail alerts",
        "Valuable customers: top share of each store by 12-month value",
        "An alert names the customers among them who became High risk or Lapsing since the last rescore.",
        min=0.001,
        max=1,
    ),
    Spec("mail.alert_failures", "bool", True, "E-mail alerts", "Alert when an import or a training run fails"),
    Spec(
        "mail.alert_paused",
        "bool",
        True,
        "E-mail alerts",
        "Alert when a campaign or an automation pauses (Twilio unreachable, account refused, budget reached)",
    ),
    Spec(
        "mail.optout_share",
        "float",
        0.05,
        "E-mail alerts",
        "Opt-out spike: share of a campaign's recipients who replied STOP",
        "Counted over the hours below after the campaign started sending.",
        min=0.001,
        max=1,
    ),
    Spec("mail.optout_hours", "int", 48, "E-mail alerts", "Opt-out spike: hours after a send", min=1, max=720),
    Spec(
        "mail.optout_min_recipients",
        "int",
        20,
        "E-mail alerts",
        "Opt-out spike: only for campaigns with at least this many recipients",
        min=1,
        max=1_000_000,
    ),
)
BY_KEY = {s.key: s for s in SPECS}
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class SettingError(ValueError):
    """A value an admin typed that the setting cannot take; the message says why."""


def parse(spec: Spec, raw: Any) -> Any:
    """Turn a typed-in value into the setting's type, or raise SettingError with the reason."""
    text = str(raw).strip() if raw is not None else ""
    if spec.type in {"int", "float"}:
        try:
            value = int(text) if spec.type == "int" else float(text)
        except ValueError:
            raise SettingError(f"must be a {'whole ' if spec.type == 'int' else ''}number") from None
        if spec.min is not None and value < spec.min:
            raise SettingError(f"must be at least {spec.min:g}")
        if spec.max is not None and value > spec.max:
            raise SettingError(f"must be at most {spec.max:g}")
        return value
    if spec.type == "bool":
        return text.lower() in {"1", "true", "yes", "on"}
    if spec.type == "time":
        if not _TIME.match(text):
            raise SettingError("must be a time like 08:00")
        return text
    if not text:
        raise SettingError("must not be empty")
    if spec.max is not None and len(text) > spec.max:
        raise SettingError(f"must be at most {int(spec.max)} characters")
    if spec.placeholders:
        used = set(re.findall(r"{(\w+)}", text))
        unknown = used - set(spec.placeholders)
        if unknown:
            raise SettingError(
                "unknown placeholder "
                + ", ".join("{%s}" % u for u in sorted(unknown))
                + "; allowed: "
                + ", ".join("{%s}" % p for p in spec.placeholders)
            )
    return text


def get(key: str) -> Any:
    """The current value of a setting: the admin's override, else the default in code."""
    spec = BY_KEY[key]
    row = db.session.get(Setting, key)
    return spec.default if row is None else json.loads(row.value)


def all_values() -> dict[str, Any]:
    """Every setting's current value in one query (for pages and scoring runs)."""
    values = {s.key: s.default for s in SPECS}
    for row in db.session.query(Setting).all():
        if row.key in BY_KEY:
            values[row.key] = json.loads(row.value)
    return values


def update(changes: dict[str, Any], user_email: str | None = None) -> dict[str, str]:
    """Validate and store changed settings, one audit entry each; returns errors by key (none stored then)."""
    errors: dict[str, str] = {}
    parsed: dict[str, Any] = {}
    for key, raw in changes.items():
        spec = BY_KEY.get(key)
        if spec is None:
            errors[key] = "unknown setting"
            continue
        try:
            parsed[key] = parse(spec, raw)
        except SettingError as exc:
            errors[key] = str(exc)
    current = all_values()
    merged = {**current, **parsed}
    if merged["churn.low"] >= merged["churn.high"]:
        errors["churn.low"] = "must be below the High band cut-off"
    if merged["tiers.bar"] not in BAR_MODES:
        errors["tiers.bar"] = "must be “derived” or “fixed”"
    if errors:
        return errors
    for key, value in parsed.items():
        if value == current[key]:
            continue
        row = db.session.get(Setting, key) or Setting(key=key)
        row.value = json.dumps(value)
        row.updated_by = user_email
        db.session.add(row)
        audit.record("settings.change", key, {"before": current[key], "after": value}, user_email)
    db.session.commit()
    return {}
