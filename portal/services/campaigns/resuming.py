"""Starting and resuming a campaign's sending: the jobs around the sender, never the sending itself.

A campaign is sent by a background job (``SEND_JOB``, run by portal.jobs). A run that meets
quiet hours ends with the campaign 'waiting' and a ``RESUME_JOB`` scheduled for when the
window opens; the server catches up at start-up (``resume_on_start``) and cron may run
``flask campaign resume`` (``resume_due``). Every path goes through :func:`start_send`, whose
waiting → queued step is one compare-and-set UPDATE, so a campaign is never queued twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timezone

from flask import current_app, has_request_context, url_for
from sqlalchemy import func, or_, select, update

from portal import jobs
from portal.extensions import db
from portal.models import Campaign, Job, OutboxMessage
from portal.services import audit
from portal.services.campaigns.campaigns import CampaignError
from portal.services.campaigns.outbox import IN_PROGRESS, NO_SYNC
from portal.services.clock import aware, utcnow

log = logging.getLogger(__name__)

SEND_JOB = "campaign.send"  # declared by sending.send_campaign_job
RESUME_JOB = "campaign.resume"


def status_callback_url() -> str | None:
    """PUBLIC_BASE_URL + /sms/status, else the current request's host; None from a bare CLI."""
    base = (current_app.config.get("PUBLIC_BASE_URL") or "").strip().rstrip("/")
    if base:
        return base + "/sms/status"
    if has_request_context():
        return url_for("webhooks.sms_status", _external=True)
    return None


def start_send(
    campaign_id: int, user_email: str | None = None, options: Mapping | None = None, due_by: datetime | None = None
) -> Job:
    """Queue a campaign's sending as a background job (also resumes a stopped or waiting one).

    A 'waiting' campaign becomes 'queued' by one compare-and-set UPDATE, so resumes racing each
    other (two timers, a timer and cron, a server start) queue one job; the others get
    CampaignError. ``due_by`` (given by automatic resumes): act only on a campaign that is
    'waiting' and due by then, so a resume armed for an earlier time leaves a campaign that has
    since been resumed, stopped or re-scheduled alone.

    Raises CampaignError when the campaign is finished, cancelled, no longer waiting for this
    resume, or has nothing left to send.
    """
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"No campaign {campaign_id}.")
    if campaign.status in ("cancelled", "done"):
        raise CampaignError(f"Campaign {campaign_id} is {campaign.status}; nothing more will be sent.")
    left = db.session.scalar(
        select(func.count()).where(OutboxMessage.campaign_id == campaign_id, OutboxMessage.status.in_(IN_PROGRESS))
    )
    if not left:
        raise CampaignError(f"Campaign {campaign_id} has no messages left to send.")
    if campaign.status == "waiting" or due_by is not None:
        if not _claim_waiting(campaign_id, due_by):
            db.session.rollback()
            raise CampaignError(f"Campaign {campaign_id} is no longer waiting (resumed or re-scheduled already).")
    else:
        campaign.status = "queued"
    audit.record("campaign.send", f"campaign:{campaign_id}", {"rows_left": left}, user_email)
    db.session.commit()
    kwargs = {"campaign_id": campaign_id, "callback_url": status_callback_url()}
    if options:
        kwargs["options"] = dict(options)
    return jobs.enqueue(
        SEND_JOB, f"Send campaign “{campaign.name}”", user_email=user_email, scope_store_id=campaign.store_id, **kwargs
    )


def _claim_waiting(campaign_id: int, due_by: datetime | None) -> bool:
    """waiting → queued in one UPDATE (not yet committed); True for the one caller that moved it."""
    condition = [Campaign.id == campaign_id, Campaign.status == "waiting"]
    if due_by is not None:
        due_by = aware(due_by).astimezone(timezone.utc)
        condition.append(or_(Campaign.scheduled_for.is_(None), Campaign.scheduled_for <= due_by))
    result = db.session.execute(update(Campaign).where(*condition).values(status="queued"), execution_options=NO_SYNC)
    return result.rowcount == 1


def resume_due(now: datetime | None = None) -> list[int]:
    """Queue every 'waiting' campaign whose time has come; returns the ids this call queued.

    Campaigns resume by themselves (``schedule_resume``); this catches up after downtime (the
    server runs it when it starts) and stays available for cron: ``flask campaign resume``.
    """
    now = now or utcnow()
    due = db.session.scalars(
        select(Campaign.id).where(
            Campaign.status == "waiting", or_(Campaign.scheduled_for.is_(None), Campaign.scheduled_for <= now)
        )
    ).all()
    queued = []
    for campaign_id in due:
        try:
            start_send(campaign_id, user_email="scheduler", due_by=now)
        except CampaignError as exc:  # resumed by someone else meanwhile, or nothing left
            log.info("campaign %s not resumed: %s", campaign_id, exc)
            continue
        queued.append(campaign_id)
    return queued


def schedule_resume(campaign_id: int, due: datetime) -> Job:
    """Arrange for a waiting campaign to resume at ``due`` (a job run by portal.jobs at that time)."""
    due = aware(due).astimezone(timezone.utc)
    row = db.session.execute(select(Campaign.name, Campaign.store_id).where(Campaign.id == campaign_id)).first()
    name, store_id = (row.name, row.store_id) if row is not None else (campaign_id, None)
    return jobs.schedule_at(
        due,
        RESUME_JOB,
        f"Resume campaign “{name}”",
        user_email="scheduler",
        scope_store_id=store_id,
        campaign_id=campaign_id,
        due=due.isoformat(),
    )


@jobs.job(RESUME_JOB)
def resume_campaign_job(progress, campaign_id: int, due: str | None = None) -> dict:
    """Job entry point (scheduled): resume this campaign if it is still waiting for this time.

    A cancelled, finished or already resumed campaign is left alone (the result says why).
    """
    due_by = datetime.fromisoformat(due) if due else utcnow()
    try:
        job = start_send(campaign_id, user_email="scheduler", due_by=due_by)
    except CampaignError as exc:
        return {"message": f"Not resumed: {exc}", "resumed": False}
    return {"message": f"Campaign {campaign_id} resumed.", "resumed": True, "send_job": job.id}


def resume_on_start(now: datetime | None = None) -> dict:
    """At server start-up with the in-process runner, whose timers died with the last process:
    queue campaigns that became due meanwhile, re-arm scheduled jobs, and schedule a resume for
    any campaign still waiting for a later time without one. Safe to run in several processes.
    """
    now = now or utcnow()
    resumed = resume_due(now)
    rearmed = jobs.restore_scheduled()
    armed_until: dict[int, datetime] = {}
    for kwargs in db.session.scalars(select(Job.kwargs).where(Job.func == RESUME_JOB, Job.status == "scheduled")):
        if (kwargs or {}).get("campaign_id") is not None and kwargs.get("due"):
            cid, at = kwargs["campaign_id"], datetime.fromisoformat(kwargs["due"])
            armed_until[cid] = max(at, armed_until.get(cid, at))
    later = db.session.execute(
        select(Campaign.id, Campaign.scheduled_for).where(Campaign.status == "waiting", Campaign.scheduled_for > now)
    ).all()
    scheduled = []
    for campaign_id, due in later:
        if campaign_id not in armed_until or armed_until[campaign_id] < aware(due):
            schedule_resume(campaign_id, due)
            scheduled.append(campaign_id)
    return {"resumed": resumed, "rearmed": rearmed, "scheduled": scheduled}


def latest_job(campaign_id: int) -> Job | None:
    """The most recent send job of a campaign (for its progress bar and its last message)."""
    for job in db.session.scalars(select(Job).where(Job.func == SEND_JOB).order_by(Job.created_at.desc()).limit(200)):
        if (job.kwargs or {}).get("campaign_id") == campaign_id:
            return jobs.get(job.id)
    return None
