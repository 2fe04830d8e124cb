"""Campaign results: delivery, redemptions, and purchases of the messaged group against the control group.

Why it works this way: docs/design-notes.md#campaign-results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, case, func, or_, select

from portal.extensions import db
from portal.formatting import money
from portal.models import Campaign, ConsentEvent, OutboxMessage, PurchaseLine, Store
from portal.services import settings
from portal.services.campaigns.outbox import IN_PROGRESS
from portal.services.campaigns.result_reasons import MIN_GROUP, MIN_OUTCOMES, explain
from portal.services.campaigns.result_reasons import no_results_reason as no_results_reason  # the pages' import
from portal.services.clock import aware, zone
from portal.sms_text import GSM7_BASIC, segment_info

CONFIDENCE = 0.95
#: Statuses of a message Twilio accepted (or the dry run recorded).
ACCEPTED = ("sent", "delivered", "undelivered", "dry-run")


# --- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """messaged − control, with its standard error and a two-sided interval."""

    estimate: float
    se: float
    margin: float  # half-width of the interval ("give or take")
    method: str
    df: float | None = None

    @property
    def low(self) -> float:
        return self.estimate - self.margin

    @property
    def high(self) -> float:
        return self.estimate + self.margin

    @property
    def includes_zero(self) -> bool:
        """True when the interval does not rule out "no effect"."""
        return self.low <= 0 <= self.high


def proportion_difference(k1: int, n1: int, k0: int, n0: int, confidence: float = CONFIDENCE) -> Difference:
    """p1 − p0 with the normal-approximation (Wald, unpooled) interval; n1, n0 must be > 0."""
    p1, p0 = k1 / n1, k0 / n0
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    from scipy import stats  # imported here: scipy.stats costs seconds at app start

    z = stats.norm.ppf(0.5 + confidence / 2)
    return Difference(p1 - p0, se, z * se, "normal approximation, difference of proportions")


def mean_difference(
    n1: int, mean1: float, var1: float, n0: int, mean0: float, var0: float, confidence: float = CONFIDENCE
) -> Difference:
    """m1 − m0 with Welch's interval (sample variances with n−1; both n ≥ 2)."""
    a, b = var1 / n1, var0 / n0
    se = math.sqrt(a + b)
    if se == 0:
        return Difference(mean1 - mean0, 0.0, 0.0, "Welch t", math.inf)
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n0 - 1))
    from scipy import stats

    t = stats.t.ppf(0.5 + confidence / 2, df)
    return Difference(mean1 - mean0, se, t * se, "Welch t", df)


def summarise(values: list[float]) -> tuple[int, float, float]:
    """(n, mean, sample variance with n−1) of a list of numbers (variance 0 below two values)."""
    n = len(values)
    if n == 0:
        return 0, 0.0, 0.0
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return n, mean, var


# --- sentences -------------------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:.1f}"


def rate_sentence(diff: Difference, enough: bool, n1: int, n0: int) -> str:
    """The purchase-rate comparison in plain words (points = percentage points)."""
    if not enough:
        return (
            f"Too few customers to conclude: {n1} messaged and {n0} in the control group. Each group needs at "
            f"least {MIN_GROUP} customers, and at least {MIN_OUTCOMES} who bought and {MIN_OUTCOMES} who did "
            "not, before a difference in purchase rates means anything."
        )
    points, margin = diff.estimate * 100, diff.margin * 100
    if round(points, 1) == 0:
        text = f"Messaged customers bought as often as the control group, give or take {_num(margin)} points."
    else:
        word = "more" if points > 0 else "less"
        text = (
            f"Messaged customers bought {_num(abs(points))} points {word} often than the control group, "
            f"give or take {_num(margin)}."
        )
    if diff.includes_zero:
        text += (
            f" The 95 % interval ({_num(diff.low * 100)} to {_num(diff.high * 100)} points) includes zero, "
            "so this could be chance."
        )
    return text


def revenue_sentence(diff: Difference, enough: bool, n1: int, n0: int, currency: str = "USD") -> str:
    """The revenue-per-customer comparison in plain words."""
    if not enough:
        return (
            f"Too few customers to conclude on revenue: {n1} messaged and {n0} in the control group "
            f"(each group needs at least {MIN_GROUP})."
        )
    amount, margin = diff.estimate, diff.margin
    if round(amount, 2) == 0:
        text = (
            f"Messaged customers spent as much per customer as the control group, give or take "
            f"{money(margin, currency=currency)}."
        )
    else:
        word = "more" if amount > 0 else "less"
        text = (
            f"Messaged customers spent {money(abs(amount), currency=currency)} {word} per customer than the "
            f"control group, give or take {money(margin, currency=currency)}."
        )
    if diff.includes_zero:
        text += (
            f" The 95 % interval ({money(diff.low, currency=currency)} to {money(diff.high, currency=currency)}) "
            "includes zero, so this could be chance."
        )
    return text


# --- a campaign's results --------------------------------------------------------------------


@dataclass
class GroupOutcome:
    """One group's purchases in the window."""

    n: int
    buyers: int
    revenue: float  # total net amount
    mean: float  # revenue per customer
    var: float  # sample variance of revenue per customer

    @property
    def rate(self) -> float | None:
        return self.buyers / self.n if self.n else None


@dataclass
class Results:
    """Everything the campaign page shows once messages have gone out."""

    days: int
    window_start: datetime | None
    window_end: datetime | None
    complete: bool
    days_elapsed: int
    delivery: dict[str, int] = field(default_factory=dict)
    message: GroupOutcome | None = None
    control: GroupOutcome | None = None
    rate: Difference | None = None
    revenue: Difference | None = None
    rate_enough: bool = False
    revenue_enough: bool = False
    rate_text: str = ""
    revenue_text: str = ""
    currency: str = "USD"
    reason: str = ""  # why there is no conclusion yet, in plain words ("" once there is one)
    expected: str = ""  # when a result can be expected (or that none can)
    left: int = 0  # messages still to send
    latest_purchase: datetime | None = None  # the newest purchase on file for the campaign's stores (local time)


def _group_outcome(n: int, per_customer: list[tuple[float, bool]]) -> GroupOutcome:
    """Totals of a group from (net amount, bought) of its customers who had any line in the window."""
    buyers = sum(1 for _, bought in per_customer if bought)
    total = sum(a for a, _ in per_customer)
    squares = sum(a * a for a, _ in per_customer)
    mean = total / n if n else 0.0
    var = max(squares - n * mean * mean, 0.0) / (n - 1) if n > 1 else 0.0
    return GroupOutcome(n=n, buyers=buyers, revenue=total, mean=mean, var=var)


def delivery_counts(campaign_id: int, since: datetime | None = None) -> dict[str, int]:
    """Messages (messaged group), sent, delivered, failed, opted out since ``since``, redeemed."""
    rows = dict(
        db.session.execute(
            select(OutboxMessage.status, func.count())
            .where(OutboxMessage.campaign_id == campaign_id, OutboxMessage.group == "message")
            .group_by(OutboxMessage.status)
        ).all()
    )
    redeemed = (
        db.session.scalar(
            select(func.count()).where(OutboxMessage.campaign_id == campaign_id, OutboxMessage.redeemed_at.is_not(None))
        )
        or 0
    )
    opted = 0
    if since is not None:
        opted = (
            db.session.scalar(
                select(func.count(ConsentEvent.customer_id.distinct())).where(
                    ConsentEvent.status == "opted_out",
                    ConsentEvent.effective_at >= since,
                    ConsentEvent.customer_id.in_(
                        select(OutboxMessage.customer_id).where(
                            OutboxMessage.campaign_id == campaign_id, OutboxMessage.group == "message"
                        )
                    ),
                )
            )
            or 0
        )
    return {
        "messages": sum(rows.values()),
        "sent": sum(rows.get(s, 0) for s in ACCEPTED),
        "delivered": rows.get("delivered", 0),
        "failed": rows.get("failed", 0) + rows.get("undelivered", 0),
        "opted_out": opted,
        "redeemed": redeemed,
    }


def first_send(campaign_id: int) -> datetime | None:
    """When the first message of the campaign went out (the start of the results window)."""
    return aware(
        db.session.scalar(
            select(func.min(OutboxMessage.sent_at)).where(
                OutboxMessage.campaign_id == campaign_id, OutboxMessage.sent_at.is_not(None)
            )
        )
    )


def campaign_results(campaign: Campaign, now: datetime | None = None, days: int | None = None) -> Results | None:
    """Delivery, redemptions and the messaged-vs-control comparison; None before anything was sent.

    Computed from the outbox and purchase lines (``measure``), then worded for ``now`` (``build``).
    Pages read the stored measurement instead (portal/services/summaries/campaigns.py).
    """
    now = now or datetime.now(timezone.utc)
    raw = measure(campaign, now, days)
    return build(raw, now) if raw is not None else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def measure(campaign: Campaign, now: datetime, days: int | None = None) -> dict | None:
    """Everything ``build`` needs, as JSON-ready values, measured with the window cut at ``now``.

    None before anything was sent. Besides the numbers it keeps ``valid_until``: when the earliest
    purchase line already on file after the cut (a line dated up to a day ahead) enters the window,
    after which the numbers must be measured again; None when no such line exists.
    """
    days = int(settings.get("sms.result_days")) if days is None else days
    start = first_send(campaign.id)
    if start is None:
        return None
    end = start + timedelta(days=days)
    stores = {s.id: s for s in db.session.scalars(select(Store))}
    store = stores.get(campaign.store_id)
    upto = min(end, now)
    raw: dict = {
        "days": days,
        "start": _iso(start),
        "end": _iso(end),
        "upto": _iso(upto),
        "currency": store.currency if store else "USD",
        "zone": None,
        "delivery": delivery_counts(campaign.id, start),
        "groups": None,
        "left": 0,
        "latest_purchase": None,
        "valid_until": None,
    }
    sizes = dict(
        db.session.execute(
            select(OutboxMessage.group, func.count())
            .where(OutboxMessage.campaign_id == campaign.id)
            .group_by(OutboxMessage.group)
        ).all()
    )
    # Purchase times are store-local wall times: compare each store's lines with the window in its zone.
    windows = [
        and_(
            PurchaseLine.store_id == sid,
            PurchaseLine.purchased_at >= start.astimezone(zone(s.timezone)).replace(tzinfo=None),
            PurchaseLine.purchased_at < upto.astimezone(zone(s.timezone)).replace(tzinfo=None),
        )
        for sid, s in stores.items()
    ]
    if not windows:
        return raw
    query = (
        select(
            OutboxMessage.group,
            PurchaseLine.customer_id,
            func.sum(PurchaseLine.amount),
            func.max(case((PurchaseLine.amount > 0, 1), else_=0)),
        )
        .join(
            OutboxMessage,
            and_(OutboxMessage.customer_id == PurchaseLine.customer_id, OutboxMessage.campaign_id == campaign.id),
        )
        .where(or_(*windows))
        .group_by(OutboxMessage.group, PurchaseLine.customer_id)
    )
    per_group: dict[str, list[tuple[float, bool]]] = {"message": [], "control": []}
    for group, _customer, amount, bought in db.session.execute(query):
        per_group.setdefault(group, []).append((float(amount or 0), bool(bought)))
    raw["groups"] = {g: vars(_group_outcome(sizes.get(g, 0), per_group[g])).copy() for g in ("message", "control")}
    raw["left"] = messages_left(campaign.id)
    latest = db.session.scalar(
        select(func.max(PurchaseLine.purchased_at)).where(
            PurchaseLine.store_id == campaign.store_id if campaign.store_id else PurchaseLine.store_id.in_(list(stores))
        )
    )
    raw["latest_purchase"] = _iso(latest)
    raw["zone"] = store.timezone if store else next(iter(stores.values())).timezone
    if upto < end:
        raw["valid_until"] = _iso(_next_purchase(campaign.id, stores, upto, end))
    return raw


def _next_purchase(campaign_id: int, stores: dict[int, Store], upto: datetime, end: datetime) -> datetime | None:
    """The earliest moment (UTC) a recipient's line on file after ``upto`` falls inside the window."""
    later = [
        and_(
            PurchaseLine.store_id == sid,
            PurchaseLine.purchased_at >= upto.astimezone(zone(s.timezone)).replace(tzinfo=None),
            PurchaseLine.purchased_at < end.astimezone(zone(s.timezone)).replace(tzinfo=None),
        )
        for sid, s in stores.items()
    ]
    rows = db.session.execute(
        select(PurchaseLine.store_id, func.min(PurchaseLine.purchased_at))
        .join(
            OutboxMessage,
            and_(OutboxMessage.customer_id == PurchaseLine.customer_id, OutboxMessage.campaign_id == campaign_id),
        )
        .where(or_(*later))
        .group_by(PurchaseLine.store_id)
    ).all()
    moments = [
        first.replace(tzinfo=zone(stores[sid].timezone)).astimezone(timezone.utc) for sid, first in rows if first
    ]
    return min(moments) if moments else None


def messages_left(campaign_id: int) -> int:
    """Outbox rows still to send (pending or in progress)."""
    return (
        db.session.scalar(
            select(func.count()).where(OutboxMessage.campaign_id == campaign_id, OutboxMessage.status.in_(IN_PROGRESS))
        )
        or 0
    )


def build(raw: dict, now: datetime) -> Results:
    """The Results the campaign page shows, from ``measure``'s values, worded for ``now`` (no query)."""
    start, end = _when(raw["start"]), _when(raw["end"])
    days = raw["days"]
    upto = min(end, now)
    currency = raw["currency"]
    results = Results(
        days=days,
        window_start=start,
        window_end=end,
        complete=now >= end,
        days_elapsed=max(0, min(days, (upto - start).days)),
        currency=currency,
        delivery=dict(raw["delivery"]),
    )
    if raw["groups"] is None:
        return results
    message = GroupOutcome(**raw["groups"]["message"])
    control = GroupOutcome(**raw["groups"]["control"])
    results.message, results.control = message, control
    if message.n >= 2 and control.n >= 2:
        results.rate = proportion_difference(message.buyers, message.n, control.buyers, control.n)
        results.revenue = mean_difference(message.n, message.mean, message.var, control.n, control.mean, control.var)
        results.rate_enough = all(
            g.n >= MIN_GROUP and g.buyers >= MIN_OUTCOMES and g.n - g.buyers >= MIN_OUTCOMES for g in (message, control)
        )
        results.revenue_enough = message.n >= MIN_GROUP and control.n >= MIN_GROUP and results.revenue.se > 0
        results.rate_text = rate_sentence(results.rate, results.rate_enough, message.n, control.n)
        results.revenue_text = revenue_sentence(results.revenue, results.revenue_enough, message.n, control.n, currency)
    results.left = raw["left"]
    results.latest_purchase = _when(raw["latest_purchase"])
    explain(results, zone(raw["zone"]))
    if not results.rate_enough:
        results.rate_text = results.reason
        if not results.revenue_enough:
            results.revenue_text = ""
    return results


# --- what a campaign's messages cost ---------------------------------------------------------


@dataclass
class OutboxCost:
    """The exact size and price of the messages a campaign still has to send."""

    messages: int
    segments: int
    price_per_segment: float
    ucs2_messages: int
    ucs2_chars: list[str]

    @property
    def cost(self) -> float:
        return round(self.segments * self.price_per_segment, 4)


def outbox_cost(campaign_id: int, statuses: tuple[str, ...] = ("pending", "in_doubt")) -> OutboxCost:
    """Messages still to send, their segments and cost at sms.price_per_segment (the confirm step)."""
    price = float(settings.get("sms.price_per_segment"))
    messages = segments = ucs2 = 0
    culprits: dict[str, None] = {}
    query = select(OutboxMessage.body).where(
        OutboxMessage.campaign_id == campaign_id, OutboxMessage.group == "message", OutboxMessage.status.in_(statuses)
    )
    for (body,) in db.session.execute(query.execution_options(yield_per=5000)):
        messages += 1
        body = body or ""
        if GSM7_BASIC.issuperset(body):
            segments += 1 if len(body) <= 160 else -(-len(body) // 153)
            continue
        info = segment_info(body)
        segments += info.segments
        if info.encoding == "UCS-2":
            ucs2 += 1
            for ch in info.ucs2_chars:
                culprits.setdefault(ch, None)
    return OutboxCost(messages, segments, price, ucs2, list(culprits)[:20])
