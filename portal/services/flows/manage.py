"""Reading and changing flows for the pages: store scoping, the switch, the settings, the preview."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from portal.extensions import db
from portal.models import Flow, Store
from portal.security import user_store_id
from portal.services import audit
from portal.services.campaigns.messages import CampaignError, new_codes, validate_template
from portal.services.clock import utcnow
from portal.services.flows import guards, kinds, runner
from portal.sms_text import segment_info


class FlowError(ValueError):
    """A flow change that cannot be made; the message is for the user."""


def stores_for(user) -> list[Store]:
    """Stores whose flows ``user`` may see: their own, or every store for admins and store-less marketers."""
    own = user_store_id(user)
    query = select(Store).order_by(Store.name)
    if own is not None:
        query = query.where(Store.id == own)
    elif user.role == "manager":
        return []
    return list(db.session.scalars(query))


def get_for_user(flow_id: int, user) -> Flow | None:
    flow = db.session.get(Flow, flow_id)
    if flow is None or flow.store_id not in {s.id for s in stores_for(user)}:
        return None
    return flow


def store_of(flow: Flow) -> Store:
    return db.session.get(Store, flow.store_id)


def check_template(template: str) -> None:
    """The campaigns' template rules, plus {product} (the bundle offer's dead-stock item)."""
    try:
        validate_template((template or "").replace("{product}", "it"))
    except CampaignError as exc:
        raise FlowError(str(exc).replace("{expires}.", "{expires}, {product}.")) from None


def switch(flow: Flow, on: bool, user_email: str) -> None:
    """Switch a flow on or off; switching on keeps a daily run scheduled. Commits."""
    flow.enabled = bool(on)
    flow.updated_by = user_email
    audit.record("flows.switch", f"flow:{flow.id}", {"kind": flow.kind, "enabled": flow.enabled}, user_email)
    db.session.commit()
    if flow.enabled:
        from portal.services.flows.jobs import ensure_scheduled

        ensure_scheduled()


def update(flow: Flow, values: dict, user_email: str) -> None:
    """Save a flow's template, cooldown, control share, daily limit, expiry and thresholds. Commits.

    Raises FlowError with the reason for a value it cannot take.
    """
    check_template(values["template"])
    share = float(values["control_share"])
    if not 0 <= share <= 0.5:
        raise FlowError("The control share must be between 0 % and 50 %.")
    params = {}
    for p in kinds.KINDS[flow.kind].params:
        raw = values.get(p.key)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise FlowError(f"{p.label}: must be a number.") from None
        if not p.min <= value <= p.max:
            raise FlowError(f"{p.label}: must be between {p.min:g} and {p.max:g}.")
        params[p.key] = int(value) if p.integer else value
    flow.template = values["template"].strip()
    flow.cooldown_days = int(values["cooldown_days"])
    flow.control_share = share
    flow.daily_limit = int(values["daily_limit"])
    flow.expiry_days = int(values["expiry_days"])
    flow.params = params
    flow.updated_by = user_email
    audit.record(
        "flows.update",
        f"flow:{flow.id}",
        {"kind": flow.kind, "cooldown_days": flow.cooldown_days, "control_share": share, "params": params},
        user_email,
    )
    db.session.commit()


@dataclass
class Preview:
    """Who the flow would enter today, everyone left out by reason, three real example messages, the budget."""

    plan: runner.Plan
    examples: list[dict]
    budget: guards.Budget
    exclusions: list[dict]


def preview(flow: Flow, now: datetime | None = None) -> Preview:
    """The day's plan without writing anything (the same ``plan_flow`` the run uses)."""
    now = now or utcnow()
    store = db.session.get(Store, flow.store_id)
    budget = guards.budget_for(store, now)
    spent = budget.spent
    plan = runner.plan_flow(flow, store, now, budget=budget)
    budget.spent = spent  # the preview planned, it did not spend
    stores = {s.id: s for s in db.session.scalars(select(Store))}
    people = [p for p in plan.people if p["group"] == "message"][:3]
    body = runner._writers(flow, store, people or plan.people, stores, runner._expiry(flow, store, now))
    examples = []
    for person, code in zip(people, new_codes(len(people))):
        text = body(person, code)
        info = segment_info(text)
        examples.append(
            {
                "first_name": person["first_name"],
                "phone": person["phone"],
                "body": text,
                "segments": info.segments,
                "encoding": info.encoding,
            }
        )
    if not plan.cost and examples:  # no budget: the run skipped pricing; estimate from the examples
        plan.cost = plan.messages * max(e["segments"] for e in examples) * budget.price
    exclusions = [
        {"key": k, "label": label, "count": plan.exclusions.get(k, 0)} for k, label in runner.EXCLUSIONS.items()
    ]
    return Preview(plan=plan, examples=examples, budget=budget, exclusions=exclusions)
