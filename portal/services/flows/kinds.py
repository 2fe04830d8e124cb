"""The six flows: their names, what they do, their default templates and thresholds (``Flow.params``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Param:
    """One threshold of a flow's rule, editable on its page."""

    key: str
    label: str
    default: float
    min: float
    max: float
    integer: bool = True


@dataclass(frozen=True)
class Kind:
    key: str
    label: str
    rule: str  # the audience rule in words, with the thresholds' names in braces
    template: str
    cooldown_days: int
    params: tuple[Param, ...] = field(default_factory=tuple)


KINDS: dict[str, Kind] = {
    k.key: k
    for k in (
        Kind(
            "win_back",
            "Win-back",
            "Savable customers (not Lost) in the High churn band, or {gap_multiple}× their usual gap without buying.",
            "We miss you, {first_name}! Come back to {store} for 15% off with code {code} until {expires}.",
            60,
            (Param("gap_multiple", "Times their usual gap", 2.0, 1.0, 20.0, integer=False),),
        ),
        Kind(
            "near_tier",
            "Near the next tier",
            "Tier members within {max_gap_amount} (amount) or {max_gap_pct} % of the next tier's lowest spend.",
            "{first_name}, you are close to the next tier at {store}! Code {code} gives 10% off until {expires}.",
            30,
            (
                Param("max_gap_amount", "Within this amount of the next tier (0: off)", 50, 0, 100_000),
                Param("max_gap_pct", "Within this % of the next tier (0: off)", 10, 0, 100),
            ),
        ),
        Kind(
            "tier_up",
            "Tier-up welcome",
            "Moved up a tier at the last rescore (never on a first fit), within {within_days} days.",
            "Welcome to {tier}, {first_name}! Your reward at {store}: {reward}. Code {code}, until {expires}.",
            30,
            (Param("within_days", "Moves up to this many days old", 3, 1, 60),),
        ),
        Kind(
            "bundle",
            "Bundle offer",
            "Bought a dead-stock suggestion's partner item in the last {days} days and never the dead-stock item.",
            "{first_name}, {product} goes well with what you bought at {store}: 20% off with code {code} until "
            "{expires}.",
            30,
            (Param("days", "Partner item bought within (days)", 14, 1, 365),),
        ),
        Kind(
            "second_purchase",
            "Second purchase",
            "New customers {days} days after their first purchase (and for {window_days} days more), "
            "with no second one.",
            "Thanks for visiting {store}, {first_name}! Come again: code {code} gives 10% off until {expires}.",
            365,
            (
                Param("days", "Days after the first purchase", 21, 1, 365),
                Param("window_days", "Still eligible for (days)", 14, 0, 365),
            ),
        ),
        Kind(
            "birthday",
            "Birthday",
            "Customers whose birthday (from the customers file) is today.",
            "Happy birthday, {first_name}! A gift from {store}: code {code}, good until {expires}.",
            300,
        ),
    )
}

#: Placeholders a flow template may use: the campaigns' own plus {product} (the bundle offer's dead-stock item).
FLOW_PLACEHOLDERS = ("product",)


def default_params(kind: str) -> dict:
    return {p.key: p.default for p in KINDS[kind].params}


def params_of(kind: str, stored: dict | None) -> dict:
    """The flow's thresholds: stored values over the defaults (unknown keys dropped)."""
    values = default_params(kind)
    for key, value in (stored or {}).items():
        if key in values:
            values[key] = value
    return values


def describe(kind: str, stored: dict | None) -> str:
    """The rule in words with the flow's own thresholds."""
    values = params_of(kind, stored)
    shown = {k: (f"{v:g}" if isinstance(v, float) else str(v)) for k, v in values.items()}
    return KINDS[kind].rule.format(**shown) if values else KINDS[kind].rule
