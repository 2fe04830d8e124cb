"""A flow's honest results: messaged vs control customers, per week of entry and cumulative.

Every entry is measured over the ``sms.result_days`` (30) days after the day it entered (the entry
day itself is left out for both groups: a purchase that day may come before the message). The
measure is what customers bought, whether or not they used the coupon: redemptions are shown, never
used. Purchase rate: the share of customers with at least one purchase in their window (difference
of proportions, normal approximation); revenue per customer: the mean of their window's spend,
zeros included (difference of means, Welch's t) — both with 95 % intervals. Only entries whose
window has ended count; the others are reported as still in their window.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import select

from portal.extensions import db
from portal.models import Flow, FlowEntry, OutboxMessage, PurchaseLine, Store
from portal.services import settings
from portal.services.campaigns.results import MIN_GROUP, MIN_OUTCOMES, mean_difference, proportion_difference
from portal.services.flows import guards
from portal.services.flows.runner import store_day

METHOD = (
    "95 % intervals by the normal approximation: difference of proportions (unpooled) for the purchase rate, "
    "Welch's t for revenue per customer."
)


@dataclass
class Group:
    n: int = 0
    buyers: int = 0
    revenue: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        return self.buyers / self.n if self.n else None

    @property
    def revenue_per_customer(self) -> float | None:
        return sum(self.revenue) / self.n if self.n else None

    def variance(self) -> float:
        if self.n < 2:
            return 0.0
        mean = sum(self.revenue) / self.n
        return sum((v - mean) ** 2 for v in self.revenue) / (self.n - 1)


@dataclass
class Comparison:
    """Messaged vs control for a set of entries (a week, or all)."""

    label: str
    message: Group
    control: Group
    rate: object | None = None  # campaigns.results.Difference
    revenue: object | None = None
    reason: str | None = None  # why there is no interval

    def compute(self) -> Comparison:
        m, c = self.message, self.control
        if m.n < MIN_GROUP or c.n < MIN_GROUP:
            self.reason = (
                f"each group needs {MIN_GROUP} customers with a complete window ({m.n} messaged, {c.n} control)"
            )
            return self
        self.rate = proportion_difference(m.buyers, m.n, c.buyers, c.n)
        self.revenue = mean_difference(
            m.n, m.revenue_per_customer, m.variance(), c.n, c.revenue_per_customer, c.variance()
        )
        if m.buyers + c.buyers < MIN_OUTCOMES:
            self.reason = (
                f"only {m.buyers + c.buyers} of {m.n + c.n} customers bought in their window "
                f"(fewer than {MIN_OUTCOMES}): the intervals are shown but say little yet"
            )
        return self


@dataclass
class FlowResults:
    flow: Flow
    window_days: int
    today: date
    entries: int
    maturing: int  # entries still in their window
    matures_on: date | None  # when the last of them completes
    cumulative: Comparison
    weeks: list[Comparison]
    messages_sent: int
    segments: int
    cost: float
    redeemed: int
    not_enough: str | None  # the real reason, with how many customers are still needed
    method: str = METHOD

    @property
    def incremental_revenue(self) -> float | None:
        d = self.cumulative.revenue
        return d.estimate * self.cumulative.message.n if d is not None else None

    @property
    def per_cost(self) -> tuple[float, float, float] | None:
        """Incremental revenue per unit of SMS cost: (estimate, low, high) of the 95 % interval."""
        d = self.cumulative.revenue
        if d is None or not self.cost:
            return None
        k = self.cumulative.message.n / self.cost
        return d.estimate * k, d.low * k, d.high * k


def _needed(flow: Flow, message: int, control: int, maturing_message: int, maturing_control: int) -> int:
    """More customers that must enter before both groups reach MIN_GROUP complete windows."""
    share = min(max(flow.control_share, 1e-6), 1 - 1e-6)
    short_c = max(MIN_GROUP - control - maturing_control, 0)
    short_m = max(MIN_GROUP - message - maturing_message, 0)
    return max(math.ceil(short_c / share), math.ceil(short_m / (1 - share)))


def flow_results(flow: Flow, now: datetime) -> FlowResults:
    """Messaged vs control for ``flow`` as of ``now`` (its store's today)."""
    store = db.session.get(Store, flow.store_id)
    today = store_day(store, now)
    window = int(settings.get("sms.result_days"))
    rows = db.session.execute(
        select(
            FlowEntry.customer_id,
            FlowEntry.group,
            FlowEntry.entered_on,
            OutboxMessage.status,
            OutboxMessage.body,
            OutboxMessage.redeemed_at,
        )
        .outerjoin(OutboxMessage, OutboxMessage.id == FlowEntry.outbox_id)
        .where(FlowEntry.flow_id == flow.id)
    ).all()
    mature = [r for r in rows if r.entered_on + timedelta(days=window) < today]
    spend: dict[int, list[tuple[date, float]]] = defaultdict(list)
    if mature:
        first = min(r.entered_on for r in mature)
        ids = {r.customer_id for r in mature}
        lines = db.session.execute(
            select(PurchaseLine.customer_id, PurchaseLine.purchased_at, PurchaseLine.amount).where(
                PurchaseLine.purchased_at >= datetime.combine(first, datetime.min.time()),
                PurchaseLine.customer_id.isnot(None),
            )
        )
        for cid, at, amount in lines:
            if cid in ids:
                spend[cid].append((at.date(), float(amount)))
    total = Comparison("All weeks", Group(), Group())
    weeks: dict[date, Comparison] = {}
    for r in mature:
        start, end = r.entered_on, r.entered_on + timedelta(days=window)
        bought = [a for d, a in spend.get(r.customer_id, ()) if start < d <= end]
        monday = r.entered_on - timedelta(days=r.entered_on.weekday())
        week = weeks.setdefault(monday, Comparison(f"Week of {monday.isoformat()}", Group(), Group()))
        for comparison in (total, week):
            group = comparison.message if r.group == "message" else comparison.control
            group.n += 1
            group.buyers += 1 if bought else 0
            group.revenue.append(sum(bought))
    total.compute()
    for week in weeks.values():
        week.compute()
    costing = [r for r in rows if r.group == "message" and r.status in guards.COSTING]
    segments = sum(guards.segments_of(r.body) for r in costing)
    maturing = [r for r in rows if r not in mature]
    result = FlowResults(
        flow=flow,
        window_days=window,
        today=today,
        entries=len(rows),
        maturing=len(maturing),
        matures_on=max((r.entered_on for r in maturing), default=None),
        cumulative=total,
        weeks=[weeks[k] for k in sorted(weeks)],
        messages_sent=len(costing),
        segments=segments,
        cost=segments * float(settings.get("sms.price_per_segment")),
        redeemed=sum(1 for r in rows if r.redeemed_at is not None),
        not_enough=None,
    )
    if result.matures_on is not None:
        result.matures_on = result.matures_on + timedelta(days=window + 1)
    result.not_enough = _not_enough(flow, result, rows, mature)
    return result


def _not_enough(flow: Flow, result: FlowResults, rows, mature) -> str | None:
    if not rows:
        return (
            f"No customer has entered this flow yet: each group needs {MIN_GROUP} customers whose "
            f"{result.window_days}-day window has ended (about {_needed(flow, 0, 0, 0, 0)} entries at a "
            f"{flow.control_share * 100:.0f} % control share)."
        )
    m, c = result.cumulative.message.n, result.cumulative.control.n
    if m >= MIN_GROUP and c >= MIN_GROUP:
        return None
    mm = sum(1 for r in rows if r not in mature and r.group == "message")
    mc = sum(1 for r in rows if r not in mature and r.group == "control")
    needed = _needed(flow, m, c, mm, mc)
    parts = [f"{m} messaged and {c} control customers have a complete {result.window_days}-day window"]
    parts.append(f"each group needs {MIN_GROUP}")
    if mm or mc:
        parts.append(
            f"{mm + mc} more are still in their window (all of them are measured from {result.matures_on.isoformat()})"
        )
    if needed:
        parts.append(f"about {needed} more customers must enter the flow")
    else:
        parts.append("enough have entered: results appear once their windows end")
    return "Not enough data yet: " + "; ".join(parts) + "."
