"""The ``mail.alerts`` job: turn recent events into one mail per user who wants that kind, then send.

Who hears about an event: admins always; for a store's event, also that store's users and store-less
users other than managers (the store scope every page applies); a chain-wide event (a training run)
only admins. Each user's own choices apply (portal/services/mail/preferences.py). A mail row is unique
per (user, kind, event key), so an event is mailed to a user at most once however often the job runs.
"""

from __future__ import annotations

from datetime import datetime

from flask import url_for
from sqlalchemy import select

from portal import jobs
from portal.extensions import db
from portal.formatting import number, percent
from portal.models import MailEvent, Store, User
from portal.services.clock import aware, utcnow
from portal.services.mail import compose, events, links, outbox, preferences

JOB = "mail.alerts"


def flow_paused(store_id: int | None, flow_name: str, reason: str, key: str | None = None) -> bool:
    """An automation paused: alert its store (once per key; default once a day per flow and reason)."""
    return events.flow_paused(store_id, flow_name, reason, key)


def campaign_paused(campaign_id: int, reason: str, key: str | None = None) -> bool:
    """A campaign paused in a way the audit log does not show as campaign.paused: alert its store once."""
    return events.campaign_paused(campaign_id, reason, key)


def recipients(store_id: int | None, users: list[User] | None = None) -> list[User]:
    """The active users who may see an event of ``store_id`` (None: chain-wide, admins only)."""
    users = users if users is not None else list(db.session.scalars(select(User).where(User.active.is_(True))))
    chosen = []
    for user in users:
        if user.role == "admin":
            chosen.append(user)
        elif store_id is None:
            continue
        elif user.store_id == store_id or (user.store_id is None and user.role != "manager"):
            chosen.append(user)
    return chosen


def _subject(event: MailEvent, store: Store | None) -> str:
    data = event.data or {}
    where = f" — {store.name}" if store is not None else ""
    if event.kind == "risk":
        n = data.get("total", 0)
        return f"{number(n)} valuable {'customer' if n == 1 else 'customers'} became High risk or Lapsing{where}"
    if event.kind == "failures":
        what = "Import" if data.get("what") == "import" else "Training run"
        return f"{what} {data.get('status', 'failed')}: {data.get('name', '')}{where}"
    if event.kind == "paused":
        thing = "Automation" if data.get("what") == "flow" else "Campaign"
        verb = "stopped" if data.get("stopped") else "paused"
        return f"{thing} {verb}: {data.get('name', '')}{where}"
    return f"Opt-outs after “{data.get('name', '')}”: {percent(data.get('share'), 1)} replied STOP{where}"


def _links(event: MailEvent, store: Store | None) -> dict:
    """The event's absolute links (inside links.external())."""
    data = event.data or {}
    out: dict = {}
    if event.kind == "risk":
        out["offers"] = {
            c["external_id"]: url_for("campaigns.index", customer=c["external_id"], purpose="win_back", _external=True)
            for c in data.get("customers", [])
        }
        out["churn"] = url_for("churn.index", _external=True)
    elif data.get("campaign_id") is not None:
        out["campaign"] = url_for("campaigns.detail", campaign_id=data["campaign_id"], _external=True)
    elif event.kind == "failures":
        out["page"] = url_for("imports.index" if data.get("what") == "import" else "registry.index", _external=True)
    return out


def build_for_events(now: datetime | None = None) -> int:
    """Queue the mails recent events call for (one per user who wants them); returns how many were queued."""
    now = now or utcnow()
    recent = db.session.scalars(
        select(MailEvent)
        .where(MailEvent.kind.in_(events.ALERT_EVENT_KINDS), MailEvent.created_at >= now - events.SCAN_WINDOW)
        .order_by(MailEvent.id)
    ).all()
    if not recent:
        return 0
    users = list(db.session.scalars(select(User).where(User.active.is_(True)).order_by(User.id)))
    saved = preferences.all_choices()
    stores = {s.id: s for s in db.session.scalars(select(Store))}
    queued = 0
    for event in recent:
        store = stores.get(event.store_id)
        key = f"event:{event.id}"
        for user in recipients(event.store_id, users):
            choices = saved.get(user.id) or preferences.Choices()
            if not choices.wants(event.kind) or aware(user.created_at) > aware(event.created_at):
                continue
            if outbox.exists(user.id, event.kind, key):
                continue
            with links.external():
                urls = _links(event, store)
            built = compose.build(
                user,
                event.kind,
                f"alert_{event.kind}",
                _subject(event, store),
                event=event,
                data=event.data or {},
                store=store,
                links=urls,
            )
            queued += outbox.add(
                user, event.kind, key, event.store_id, built.subject, built.text, built.html, built.unsubscribe_url
            )
    return queued


@jobs.job(JOB)
def alerts_job(progress, now: str | None = None) -> dict:
    """Find new events, queue their mails, send what is due (hourly, and by ``flask mail send-due``)."""
    at = datetime.fromisoformat(now) if now else utcnow()
    progress(0.1, "looking for events")
    found = events.scan(at)
    progress(0.4, "building alert mails")
    queued = build_for_events(at)
    progress(0.7, "sending")
    sent = outbox.deliver(now=at)
    done = ", ".join(f"{n} {status}" for status, n in sorted(sent.items())) or "nothing to send"
    return {
        "message": f"{found} new events, {queued} mails queued; {done}",
        "events": found,
        "queued": queued,
        "sent": sent,
    }
