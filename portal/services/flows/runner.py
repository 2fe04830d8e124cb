"""The daily run: each enabled flow enters the customers its rule names, once per episode, and sends.

Per flow and day: the rule's candidates → minus episodes already entered and customers within the
flow's cooldown → the campaigns' ``build_audience`` (Lost, consent, phone, landline, frequency cap:
exactly a campaign's exclusions) → not already in another flow today → the daily limit → the monthly
budget. Each remaining customer gets a ``FlowEntry`` in a random but reproducible group (message or
control, from a hash of flow, customer and episode), inserted with INSERT … ON CONFLICT DO NOTHING on
the unique (flow, customer, episode): only the rows that insert get an outbox row, so a repeated or
concurrent run adds nobody twice. The day's entries of a flow are one ``Campaign`` (``flow_id`` set),
so the campaigns' sender sends them exactly once with consent, STOP, landlines, quiet hours and kill -9
recovery unchanged; a run also finishes the sends of an earlier run that stopped half-way.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import Campaign, Flow, FlowEntry, Store
from portal.services import audit, settings
from portal.services.campaigns import campaigns as campaign_service
from portal.services.campaigns.messages import CODE_LENGTH, body_writer, new_codes
from portal.services.clock import aware, utcnow, zone
from portal.services.flows import guards, kinds, rules

log = logging.getLogger(__name__)

#: Why a candidate got no entry today, in the order applied (each customer counts once, under the first).
EXCLUSIONS = {
    "already": "Already had this episode",
    "cooldown": "Within the flow's cooldown",
    **campaign_service.EXCLUSIONS,
    "other_flow": "Entered another flow today",
    "daily_limit": "Over the daily limit (may enter tomorrow)",
    "budget": "Over the monthly SMS budget",
}
OPEN_CAMPAIGN = ("draft", "sending", "waiting")


def group_of(flow_id: int, customer_id: int, episode_key: str, share: float) -> str:
    """The entry's group: a uniform number from a hash of (flow, customer, episode) against the control share.

    Random with respect to anything about the customer, yet the same in every run, so a repeated
    run cannot move anyone between groups.
    """
    digest = hashlib.sha256(f"{flow_id}:{customer_id}:{episode_key}".encode()).digest()
    return "control" if int.from_bytes(digest[:8], "big") / 2**64 < share else "message"


def store_day(store: Store, now: datetime) -> date:
    return now.astimezone(zone(store.timezone)).date()


def ensure_flows(store: Store) -> list[Flow]:
    """The store's six flows (created switched off with the defaults the first time); commits when it creates."""
    have = {f.kind: f for f in db.session.scalars(select(Flow).where(Flow.store_id == store.id))}
    added = False
    for key, kind in kinds.KINDS.items():
        if key not in have:
            flow = Flow(
                store_id=store.id,
                kind=key,
                enabled=False,
                template=kind.template,
                cooldown_days=kind.cooldown_days,
                params=kinds.default_params(key),
                control_share=float(settings.get("sms.control_share")),
                daily_limit=500,
                expiry_days=14,
            )
            db.session.add(flow)
            have[key] = flow
            added = True
    if added:
        try:
            db.session.commit()
        except IntegrityError:  # another request created them meanwhile
            db.session.rollback()
            have = {f.kind: f for f in db.session.scalars(select(Flow).where(Flow.store_id == store.id))}
    return [have[k] for k in kinds.KINDS]


@dataclass
class Plan:
    """Who a flow enters on a day, in which group, and everyone left out with the reason."""

    flow_id: int
    kind: str
    day: date
    candidates: int = 0
    people: list[dict] = field(default_factory=list)  # build_audience dicts + episode_key, group, product, body
    exclusions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EXCLUSIONS, 0))
    budget_stopped: bool = False
    cost: float = 0.0

    @property
    def messages(self) -> int:
        return sum(p["group"] == "message" for p in self.people)

    @property
    def control(self) -> int:
        return sum(p["group"] == "control" for p in self.people)


def _expiry(flow: Flow, store: Store, now: datetime) -> datetime:
    """The offer's expiry: the end of the store-local day ``expiry_days`` from now."""
    tz = zone(store.timezone)
    last = (now.astimezone(tz) + timedelta(days=flow.expiry_days)).date()
    return datetime.combine(last, datetime.max.time().replace(microsecond=0), tzinfo=tz).astimezone(aware(now).tzinfo)


def _writers(flow: Flow, store: Store, people: list[dict], stores: dict, expires_at: datetime):
    """A body function per product name (the bundle offer's {product}; one for every other flow)."""
    rewards = {t: settings.get(f"reward.{t}") for t in settings.TIERS}
    cache = {}

    def body(person: dict, code: str) -> str:
        product = person.get("product") or ""
        writer = cache.get(product)
        if writer is None:
            safe = product.replace("{", "(").replace("}", ")")
            writer = cache[product] = body_writer(
                flow.template.replace("{product}", safe or "it"), people, stores, store, expires_at, rewards
            )
        return writer(person, code)

    return body


@dataclass
class Audience:
    """The campaigns' exclusions applied once to every candidate of a run: who may be messaged, and why not."""

    people: dict[int, dict]  # customer id -> build_audience's eligible dict
    reasons: dict[int, str]  # customer id -> exclusion key


def audience_for(store: Store, now: datetime, ids, stores: dict) -> Audience:
    """``campaigns.build_audience`` (Lost, consent, phone, landline, frequency cap) for these customers."""
    reasons: dict[int, str] = {}
    found = campaign_service.build_audience(
        {"store": str(store.id)}, None, now=now, stores=stores, customer_ids=set(ids), reasons=reasons
    )
    return Audience({p["customer_id"]: p for p in found.eligible}, reasons)


def candidates(flow: Flow, store: Store, day: date) -> tuple[dict[int, str], dict[int, str]]:
    """The flow's rule for the day: ({customer id: episode key}, {customer id: product name} for the bundle offer)."""
    params = kinds.params_of(flow.kind, flow.params)
    if flow.kind == "bundle":
        targets = rules.bundle_targets(store, day, params)
        return {cid: f"dead:{dead}" for cid, (dead, _n) in targets.items()}, {
            cid: name for cid, (_d, name) in targets.items()
        }
    return rules.RULES[flow.kind](store, day, params), {}


def plan_flow(
    flow: Flow,
    store: Store,
    now: datetime,
    day: date | None = None,
    stores: dict | None = None,
    taken: set[int] | None = None,
    budget: guards.Budget | None = None,
    named: tuple[dict[int, str], dict[int, str]] | None = None,
    audience: Audience | None = None,
) -> Plan:
    """Who ``flow`` would enter on ``day`` (default: the store's today) and why the others are left out.

    ``taken``: customers already entered in another flow this run (one automated message a day at most).
    ``budget``: the store's budget so far this month (its ``spent`` grows with the messages planned).
    ``named`` / ``audience``: the rule's candidates and the exclusions, when the run computed them for
    every flow at once (one pass over the store's customers instead of one per flow).
    """
    day = day or store_day(store, now)
    stores = stores if stores is not None else {s.id: s for s in db.session.scalars(select(Store))}
    found, products = named if named is not None else candidates(flow, store, day)
    plan = Plan(flow_id=flow.id, kind=flow.kind, day=day, candidates=len(found))
    if not found:
        return plan
    cutoff = day - timedelta(days=max(flow.cooldown_days, 0))
    seen, recent = set(), set()
    for cid, key, entered_on in db.session.connection().execute(
        select(FlowEntry.customer_id, FlowEntry.episode_key, FlowEntry.entered_on).where(FlowEntry.flow_id == flow.id)
    ):
        if found.get(cid) == key:
            seen.add(cid)
        elif flow.cooldown_days and entered_on > cutoff:
            recent.add(cid)
    remaining = {}
    for cid, key in found.items():
        if cid in seen:
            plan.exclusions["already"] += 1
        elif cid in recent:
            plan.exclusions["cooldown"] += 1
        else:
            remaining[cid] = key
    audience = audience if audience is not None else audience_for(store, now, remaining, stores)
    eligible = []
    for cid in sorted(remaining):
        reason = audience.reasons.get(cid)
        if reason is not None:
            plan.exclusions[reason] += 1
        elif cid in audience.people:
            eligible.append(audience.people[cid])
    budget = budget if budget is not None else guards.budget_for(store, now)
    today = db.session.scalar(select(func.count()).where(FlowEntry.flow_id == flow.id, FlowEntry.entered_on == day))
    limit = max(flow.daily_limit - (today or 0), 0)  # a second run on the same day shares the day's limit
    body = _writers(flow, store, eligible, stores, _expiry(flow, store, now))
    dummy = "X" * CODE_LENGTH
    segments = guards.SegmentCounter()
    for person in eligible:
        cid = person["customer_id"]
        if taken is not None and cid in taken:
            plan.exclusions["other_flow"] += 1
            continue
        if len(plan.people) >= limit:
            plan.exclusions["daily_limit"] += 1
            continue
        key = remaining[cid]
        group = group_of(flow.id, cid, key, flow.control_share)
        entry = {**person, "episode_key": key, "group": group, "product": products.get(cid)}
        if budget.limited and (group == "message" or plan.budget_stopped):
            # Each message's own segments (names and products differ in length); without a budget, skip the render.
            cost = segments(body(entry, dummy)) * budget.price if group == "message" else 0.0
            if plan.budget_stopped or not budget.affords(cost):
                # Stop entering anyone (control too), so both groups come from the same customers.
                plan.budget_stopped = True
                plan.exclusions["budget"] += 1
                continue
            budget.spent += cost
            plan.cost += cost
        plan.people.append(entry)
    return plan


def _insert_entries(flow: Flow, campaign_id: int, plan: Plan, now: datetime) -> set[int]:
    """INSERT … ON CONFLICT DO NOTHING the plan's entries; returns the customers whose entry is new.

    The new rows are the ones that carry this (new) campaign's id: a conflicting row keeps its own.
    One statement with arrays on PostgreSQL, the driver's executemany on SQLite (an ORM multi-row
    insert spent 9 of 14 s compiling at 10k customers).
    """
    if not plan.people:
        return set()
    conn = db.session.connection()
    columns = '(flow_id, customer_id, episode_key, "group", entered_on, entered_at, campaign_id)'
    conflict = "ON CONFLICT (flow_id, customer_id, episode_key) DO NOTHING"
    if conn.dialect.name == "postgresql":
        conn.execute(
            text(
                f"INSERT INTO flow_entries {columns} SELECT :flow, c, k, g, :day, :at, :campaign "
                "FROM unnest(CAST(:cids AS integer[]), CAST(:keys AS varchar[]), CAST(:groups AS varchar[])) "
                f"AS t(c, k, g) {conflict}"
            ),
            {
                "flow": flow.id,
                "day": plan.day,
                "at": now,
                "campaign": campaign_id,
                "cids": [p["customer_id"] for p in plan.people],
                "keys": [p["episode_key"] for p in plan.people],
                "groups": [p["group"] for p in plan.people],
            },
        )
    else:
        at = f"{now.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S.%f}"  # SQLAlchemy's own SQLite format
        day = plan.day.isoformat()
        conn.exec_driver_sql(
            f"INSERT INTO flow_entries {columns} VALUES (?, ?, ?, ?, ?, ?, ?) {conflict}",
            [(flow.id, p["customer_id"], p["episode_key"], p["group"], day, at, campaign_id) for p in plan.people],
        )
    return set(db.session.scalars(select(FlowEntry.customer_id).where(FlowEntry.campaign_id == campaign_id)))


def _write(flow: Flow, store: Store, plan: Plan, now: datetime, stores: dict) -> tuple[int | None, int, int]:
    """The day's campaign, its entries and its outbox in one transaction; (campaign id, messages, control added)."""
    expires_at = _expiry(flow, store, now)
    for attempt in range(3):  # a coupon code taken by another campaign meanwhile: draw again
        campaign = Campaign(
            name=f"{kinds.KINDS[flow.kind].label} · {plan.day.isoformat()}",
            store_id=store.id,
            audience=f"flow={flow.kind}",
            template=flow.template,
            control_share=flow.control_share,
            status="draft",
            exclusions={k: n for k, n in plan.exclusions.items() if n},
            created_by="automation",
            created_at=now,
            expires_at=expires_at,
            flow_id=flow.id,
        )
        db.session.add(campaign)
        db.session.flush()
        inserted = _insert_entries(flow, campaign.id, plan, now)
        if not inserted:
            db.session.rollback()
            return None, 0, 0
        people = [p for p in plan.people if p["customer_id"] in inserted]
        body = _writers(flow, store, people, stores, expires_at)
        codes = iter(new_codes(sum(p["group"] == "message" for p in people)))
        rows = []
        for p in people:
            message = p["group"] == "message"
            code = next(codes) if message else None
            rows.append(
                {
                    "campaign_id": campaign.id,
                    "customer_id": p["customer_id"],
                    "group": p["group"],
                    "phone": p["phone"],
                    "body": body(p, code) if message else None,
                    "coupon_code": code,
                    "status": "pending" if message else "control",
                    "attempts": 0,
                }
            )
        campaign_service._bulk_insert_outbox(rows)
        db.session.execute(
            text(
                "UPDATE flow_entries SET outbox_id = o.id FROM outbox o WHERE flow_entries.campaign_id = :c "
                "AND o.campaign_id = :c AND o.customer_id = flow_entries.customer_id"
            ),
            {"c": campaign.id},
        )
        audit.record(
            "flows.enter",
            f"flow:{flow.id}",
            {
                "kind": flow.kind,
                "day": plan.day.isoformat(),
                "campaign": campaign.id,
                "messages": sum(r["group"] == "message" for r in rows),
                "control": sum(r["group"] == "control" for r in rows),
                "exclusions": {k: n for k, n in plan.exclusions.items() if n},
            },
            "automation",
        ).at = now
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            if attempt == 2:
                raise
            continue
        messages = sum(r["group"] == "message" for r in rows)
        return campaign.id, messages, len(rows) - messages
    raise AssertionError("unreachable")


@dataclass
class FlowRun:
    """What one flow did on one run, for the job's summary, the CLI and the tests."""

    flow_id: int
    kind: str
    day: date
    candidates: int
    entered: int
    messages: int
    control: int
    exclusions: dict[str, int]
    campaign_id: int | None
    budget_stopped: bool
    sends: list[dict] = field(default_factory=list)

    def line(self) -> str:
        left = ", ".join(f"{n} {EXCLUSIONS.get(k, k).lower()}" for k, n in self.exclusions.items() if n)
        return (
            f"{kinds.KINDS[self.kind].label} {self.day}: {self.candidates} named, {self.entered} entered "
            f"({self.messages} messaged, {self.control} control)" + (f"; left out: {left}" if left else "")
        )


def run_store(
    store: Store, now: datetime | None = None, day: date | None = None, gateway=None, opts=None, send: bool = True
) -> list[FlowRun]:
    """Run every enabled flow of ``store`` for ``day`` (default: the store's today) and send the messages."""
    now = now or utcnow()
    day = day or store_day(store, now)
    stores = {s.id: s for s in db.session.scalars(select(Store))}
    flows = db.session.scalars(
        select(Flow).where(Flow.store_id == store.id, Flow.enabled.is_(True)).order_by(Flow.id)
    ).all()
    taken = set(
        db.session.scalars(
            select(FlowEntry.customer_id)
            .join(Flow, Flow.id == FlowEntry.flow_id)
            .where(Flow.store_id == store.id, FlowEntry.entered_on == day)
        )
    )
    budget = guards.budget_for(store, now)
    named = {flow.id: candidates(flow, store, day) for flow in flows}
    audience = audience_for(store, now, {cid for found, _p in named.values() for cid in found}, stores)
    out = []
    for flow in flows:
        plan = plan_flow(flow, store, now, day, stores, taken, budget, named[flow.id], audience)
        campaign_id, messages, control = _write(flow, store, plan, now, stores) if plan.people else (None, 0, 0)
        if plan.budget_stopped:
            audit.record(
                "flows.budget_reached",
                f"store:{store.id}",
                {"flow": flow.kind, "day": day.isoformat(), "budget": budget.budget, "spent": round(budget.spent, 4)},
                "automation",
            ).at = now
            db.session.commit()
        taken.update(p["customer_id"] for p in plan.people)
        run = FlowRun(
            flow.id,
            flow.kind,
            day,
            plan.candidates,
            messages + control,
            messages,
            control,
            {k: n for k, n in plan.exclusions.items() if n},
            campaign_id,
            plan.budget_stopped,
        )
        if send:
            run.sends = send_open(flow.id, gateway, opts, now)
        out.append(run)
    return out


def send_open(flow_id: int, gateway=None, opts=None, now: datetime | None = None) -> list[dict]:
    """Send every campaign of the flow that is not finished (today's, and any a stopped run left)."""
    from portal.services.campaigns.send_options import options_from_settings
    from portal.services.campaigns.sending import send_campaign

    if opts is None:
        opts = options_from_settings()
        if now is not None:
            opts = replace(opts, now=lambda: now)
    ids = db.session.scalars(
        select(Campaign.id).where(Campaign.flow_id == flow_id, Campaign.status.in_(OPEN_CAMPAIGN)).order_by(Campaign.id)
    ).all()
    results = []
    for cid in ids:
        try:
            results.append({"campaign_id": cid, **send_campaign(cid, gateway, opts)})
        except Exception as exc:  # CampaignStopped (account error): recorded on the campaign; the next flow goes on
            db.session.rollback()
            log.warning("flow %s: campaign %s stopped: %s", flow_id, cid, exc)
            results.append({"campaign_id": cid, "message": str(exc)})
    return results


def run_all(
    now: datetime | None = None, day: date | None = None, store_id: int | None = None, gateway=None, opts=None
) -> list[FlowRun]:
    """Run every store's enabled flows (or one store's); returns one FlowRun per flow."""
    now = now or utcnow()
    query = select(Store).order_by(Store.id)
    if store_id is not None:
        query = query.where(Store.id == store_id)
    out = []
    for store in db.session.scalars(query).all():
        out.extend(run_store(store, now, day, gateway, opts))
    return out
