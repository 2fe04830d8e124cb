"""What may deserve an e-mail, recorded once per event: MailEvent rows, UNIQUE (kind, event_key).

Producers: the rescore (``note_rescore``: valuable customers who became High risk or Lapsing, and every
band move for the digest), other areas through ``flow_paused`` / ``campaign_paused``, and the alerts
job's scans of what other parts already record (failed imports and jobs, the audit log's campaign
pauses, opt-outs after a send). A failure here is logged and never breaks the caller's work.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import and_, distinct, func, select

from portal.extensions import db
from portal.models import (
    AuditEntry,
    Campaign,
    ConsentEvent,
    Customer,
    ImportRun,
    Job,
    MailEvent,
    OutboxMessage,
)
from portal.services import settings as settings_service
from portal.services.clock import aware, utcnow
from portal.services.mail.outbox import insert_ignore, inserted

log = logging.getLogger(__name__)

ALERT_EVENT_KINDS = ("risk", "failures", "paused", "optouts")  # = the preference kinds they go to
SCAN_WINDOW = timedelta(days=2)  # how far back the alerts job looks for things to tell
RISKY_BEFORE = ("New", "Active", "At risk")  # a move from these to Lapsing is news; from Lost it is not
SENT_STATES = ("sent", "delivered", "undelivered", "dry-run")
MAX_LISTED = 50


def record(kind: str, key: str, store_id: int | None, data: dict, *, commit: bool = True) -> bool:
    """Record an event once (INSERT … ON CONFLICT DO NOTHING); True when it is new."""
    result = db.session.execute(
        insert_ignore(MailEvent).values(
            kind=kind, event_key=key[:120], store_id=store_id, data=data, created_at=utcnow()
        )
    )
    new = inserted(result)
    if commit:
        db.session.commit()
    return new


# ---------------------------------------------------------------- calls other areas make


def flow_paused(store_id: int | None, flow_name: str, reason: str, key: str | None = None) -> bool:
    """An automation paused (budget reached, Twilio unreachable, carrier errors): alert its store once.

    ``key`` identifies the pause (default: the flow, the reason and the day, so a flow that stays paused
    is told about once a day at most). Commits its own row; never raises (the flow must go on).
    """
    day = utcnow().strftime("%Y-%m-%d")
    key = key or f"flow:{store_id}:{flow_name}:{reason[:40]}:{day}"
    return _safely(record, "paused", key, store_id, {"what": "flow", "name": flow_name, "reason": reason})


def campaign_paused(campaign_id: int, reason: str, key: str | None = None) -> bool:
    """A campaign paused or stopped: alert its store once per ``key`` (default: campaign and reason).

    Pauses the sender records in the audit log (``campaign.paused``, ``campaign.stopped``) are found by
    the alerts job without this call; it is for pauses that are not audited that way.
    """
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        return False
    key = key or f"campaign:{campaign_id}:{reason[:60]}"
    data = {"what": "campaign", "name": campaign.name, "campaign_id": campaign_id, "reason": reason}
    return _safely(record, "paused", key, campaign.store_id, data)


def _safely(fn, *args) -> bool:
    try:
        return fn(*args)
    except Exception:
        db.session.rollback()
        log.exception("mail event not recorded")
        return False


# ---------------------------------------------------------------- the rescore's changes


def note_rescore(frame: pd.DataFrame) -> dict:
    """Called by the rescore before it writes ``frame`` (new scores, indexed by customer id): record the
    valuable customers who became High risk or Lapsing, per store, and every band move for the digest.

    Compares the stored (previous) band and lifecycle with the new ones. Never raises: scoring goes on.
    Returns counts (for tests and logs).
    """
    try:
        return _note_rescore(frame)
    except Exception:
        db.session.rollback()
        log.exception("risk changes of this rescore not recorded for mail")
        return {}


def _note_rescore(frame: pd.DataFrame) -> dict:
    if frame is None or frame.empty or ("churn_band" not in frame.columns and "lifecycle" not in frame.columns):
        return {}
    query = select(Customer.external_id, Customer.id, Customer.store_id, Customer.churn_band, Customer.lifecycle)
    # Core rows (no ORM loading) turned into column lists: pandas probes every Row object it is given.
    rows = db.session.connection().execute(query.where(Customer.erased_at.is_(None))).all()
    columns = ["external_id", "customer_id", "store_id", "old_band", "old_lifecycle"]
    old = pd.DataFrame(dict(zip(columns, map(list, zip(*rows)))) if rows else {c: [] for c in columns})
    old = old.set_index("external_id")
    new = pd.DataFrame(index=frame.index.astype(str))
    new["band"] = frame["churn_band"].to_numpy() if "churn_band" in frame.columns else None
    new["lifecycle"] = frame["lifecycle"].to_numpy() if "lifecycle" in frame.columns else None
    value = pd.Series(0.0, index=frame.index)
    if "spend_12m" in frame.columns:
        value = pd.to_numeric(frame["spend_12m"], errors="coerce")
    if "clv_12m" in frame.columns:
        value = pd.to_numeric(frame["clv_12m"], errors="coerce").fillna(value)
    new["value"] = value.fillna(0.0).to_numpy()
    both = new.join(old, how="inner")
    if both.empty:
        return {}
    both["store"] = both["store_id"].fillna(-1).astype(int)
    stamp = utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")
    share = float(settings_service.get("mail.valuable_share"))
    counts = {"risk_events": 0, "band_events": 0, "customers": 0}
    for store, part in both.groupby("store"):
        store_id = None if store == -1 else int(store)
        moves = part[part["old_band"].notna() & part["band"].notna() & (part["band"] != part["old_band"])]
        if len(moves):
            pairs = moves.groupby(["old_band", "band"]).size()
            data = {"moves": {f"{a}→{b}": int(n) for (a, b), n in pairs.items()}}
            counts["band_events"] += record("bands", f"bands:{store}:{stamp}", store_id, data, commit=False)
        positive = part[part["value"] > 0]
        top = math.ceil(share * len(positive))
        valuable = positive.sort_values("value", ascending=False).head(top)
        high = (valuable["band"] == "High") & valuable["old_band"].notna() & (valuable["old_band"] != "High")
        lapsing = (valuable["lifecycle"] == "Lapsing") & valuable["old_lifecycle"].isin(RISKY_BEFORE)
        turned = valuable[(high | lapsing) & (valuable["lifecycle"] != "Lost")]
        if turned.empty:
            continue
        shown = turned.head(MAX_LISTED)  # valuable is sorted by value: the most valuable first
        ids = [int(i) for i in shown["customer_id"]]
        names = {
            cid: name
            for cid, name in db.session.execute(select(Customer.id, Customer.name).where(Customer.id.in_(ids)))
        }
        listed = [
            {
                "external_id": str(external_id),
                "name": names.get(int(customer_id)),
                "value": round(float(worth), 2),
                "became": [w for w, hit in (("High risk", is_high), ("Lapsing", is_lapsing)) if hit],
                "band": band,
                "lifecycle": stage,
            }
            for external_id, customer_id, worth, is_high, is_lapsing, band, stage in zip(
                shown.index,
                shown["customer_id"],
                shown["value"],
                high[shown.index],
                lapsing[shown.index],
                shown["band"],
                shown["lifecycle"],
            )
        ]
        data = {"customers": listed, "total": len(turned), "share": share, "valuable": int(top)}
        counts["risk_events"] += record("risk", f"risk:{store}:{stamp}", store_id, data, commit=False)
        counts["customers"] += len(turned)
    db.session.commit()
    return counts


# ---------------------------------------------------------------- scans of what other parts record


def scan(now: datetime | None = None) -> int:
    """Record the events other parts already leave behind (failures, pauses, opt-out spikes); returns new ones."""
    now = now or utcnow()
    values = settings_service.all_values()
    found = 0
    if values["mail.alert_failures"]:
        found += _scan_failures(now)
    if values["mail.alert_paused"]:
        found += _scan_pauses(now)
    found += _scan_optouts(now, values)
    db.session.commit()
    return found


def _scan_failures(now: datetime) -> int:
    since = now - SCAN_WINDOW
    found = 0
    runs = db.session.scalars(
        select(ImportRun).where(ImportRun.status.in_(("failed", "refused")), ImportRun.created_at >= since)
    ).all()
    for run in runs:
        data = {
            "what": "import",
            "name": run.filename,
            "status": run.status,
            "reason": (run.message or "")[:500],
            "by": run.user_email,
            "import_id": run.id,
        }
        found += record("failures", f"import:{run.id}", run.store_id, data, commit=False)
    jobs = db.session.scalars(
        select(Job).where(
            Job.status == "failed",
            Job.created_at >= since,
            (Job.func.like("train.%")) | (Job.func.like("import.%")) | (Job.func == "bundles.mine"),
        )
    ).all()
    for job in jobs:
        import_id = (job.kwargs or {}).get("import_id") if job.func == "import.run" else None
        key = f"import:{import_id}" if import_id is not None else f"job:{job.id}"
        what = "import" if job.func.startswith("import.") else "training"
        data = {"what": what, "name": job.title, "status": "failed", "reason": (job.message or "")[:500]}
        found += record("failures", key, job.store_id, data, commit=False)
    return found


def _scan_pauses(now: datetime) -> int:
    found = 0
    entries = db.session.scalars(
        select(AuditEntry).where(
            AuditEntry.action.in_(("campaign.paused", "campaign.stopped")), AuditEntry.at >= now - SCAN_WINDOW
        )
    ).all()
    for entry in entries:
        try:
            campaign_id = int((entry.target or "").split(":", 1)[1])
        except (IndexError, ValueError):
            continue
        campaign = db.session.get(Campaign, campaign_id)
        if campaign is None:
            continue
        data = {
            "what": "campaign",
            "name": campaign.name,
            "campaign_id": campaign_id,
            "stopped": entry.action == "campaign.stopped",
            "reason": str((entry.detail or {}).get("reason") or "")[:500],
        }
        found += record("paused", f"audit:{entry.id}", campaign.store_id, data, commit=False)
    return found


def _scan_optouts(now: datetime, values: dict) -> int:
    """Campaigns whose recipients replied STOP more than the setting's share within its hours of the send."""
    hours = timedelta(hours=int(values["mail.optout_hours"]))
    threshold = float(values["mail.optout_share"])
    minimum = int(values["mail.optout_min_recipients"])
    found = 0
    campaigns = db.session.scalars(
        select(Campaign).where(Campaign.started_at.isnot(None), Campaign.started_at >= now - hours - SCAN_WINDOW)
    ).all()
    for campaign in campaigns:
        started = aware(campaign.started_at)
        recipients = db.session.scalar(
            select(func.count()).where(
                OutboxMessage.campaign_id == campaign.id,
                OutboxMessage.group == "message",
                OutboxMessage.status.in_(SENT_STATES),
            )
        )
        if not recipients or recipients < minimum:
            continue
        stops = db.session.scalar(
            select(func.count(distinct(ConsentEvent.customer_id)))
            .select_from(ConsentEvent)
            .join(
                OutboxMessage,
                and_(
                    OutboxMessage.customer_id == ConsentEvent.customer_id,
                    OutboxMessage.campaign_id == campaign.id,
                    OutboxMessage.group == "message",
                    OutboxMessage.status.in_(SENT_STATES),
                ),
            )
            .where(
                ConsentEvent.status == "opted_out",
                ConsentEvent.source == "sms_keyword",
                ConsentEvent.effective_at >= started,
                ConsentEvent.effective_at <= started + hours,
            )
        )
        if stops and stops / recipients > threshold:
            data = {
                "what": "campaign",
                "name": campaign.name,
                "campaign_id": campaign.id,
                "recipients": int(recipients),
                "stops": int(stops),
                "share": stops / recipients,
                "threshold": threshold,
                "hours": int(values["mail.optout_hours"]),
            }
            found += record("optouts", f"optouts:{campaign.id}", campaign.store_id, data, commit=False)
    return found
