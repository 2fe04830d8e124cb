"""Sending a campaign: claim → mark sending → send → record, exactly once per recipient.

This module drives a campaign's runs (``send_campaign``; the job ``campaign.send``). Twilio has no
idempotency key, so every step commits before the next and a row in doubt is looked up, never resent
blindly: the design, and where each part lives, is in docs/sending.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, func, select, update

from portal import jobs, sms
from portal.extensions import db
from portal.models import Campaign, OutboxMessage
from portal.services import audit
from portal.services.campaigns.outbox import FINAL, IN_PROGRESS, NO_SYNC
from portal.services.campaigns.resuming import SEND_JOB, schedule_resume
from portal.services.campaigns.send_options import SendOptions, options_from_settings
from portal.services.campaigns.send_run import CampaignStopped, SendRun, TwilioUnreachable
from portal.services.summaries.campaigns import SendRefresher

log = logging.getLogger(__name__)


@jobs.job(SEND_JOB)
def send_campaign_job(
    progress, campaign_id: int, callback_url: str | None = None, options: Mapping | None = None
) -> dict:
    """Job entry point (portal.jobs): send with the configured gateway; JobError when stopped."""
    gateway = sms.gateway_from_config(current_app.config)
    try:
        return send_campaign(campaign_id, gateway, options_from_settings(options), progress, callback_url)
    except CampaignStopped as exc:
        raise jobs.JobError(str(exc)) from None


def send_campaign(
    campaign_id: int,
    gateway: sms.SmsGateway | None = None,
    opts: SendOptions | None = None,
    progress: Callable[[float, str | None], None] | None = None,
    callback_url: str | None = None,
) -> dict:
    """Send every due row of a campaign, exactly once each; returns a summary for the job.

    Ends when no row is left to send (campaign 'done'), when the next row is further away
    than ``max_wait_seconds`` (quiet hours; campaign 'waiting'), or on an account error
    (campaign 'stopped', CampaignStopped raised). Safe to run in several workers at once.
    """
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignStopped(f"No campaign {campaign_id}.")
    gateway = gateway or sms.gateway_from_config(current_app.config)
    opts = opts or options_from_settings()
    run = SendRun(campaign, gateway, opts, callback_url)
    refresh_numbers = SendRefresher(campaign_id)  # the pages read the campaign's numbers stored, not the outbox
    if campaign.status != "cancelled":
        campaign.status = "sending"
        campaign.started_at = campaign.started_at or run.now()
        db.session.commit()
    total = (
        db.session.scalar(
            select(func.count()).where(OutboxMessage.campaign_id == campaign_id, OutboxMessage.group == "message")
        )
        or 1
    )
    while True:
        db.session.expire_all()
        cancelled = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id)) == "cancelled"
        run.recover()
        open_ids = run.open_stores()
        batch_size = max(1, min(opts.batch_size, int(opts.rate_per_second * 10) or 1))
        batch = run.claim(open_ids, batch_size)
        try:
            for row in batch:
                run.process(row, cancelled)
        except CampaignStopped as exc:
            _release(run)
            _finish(campaign_id, "stopped", run.now())
            audit.record("campaign.stopped", f"campaign:{campaign_id}", {"reason": str(exc)}, "worker")
            db.session.commit()
            refresh_numbers(final=True)
            raise
        except TwilioUnreachable as exc:
            _release(run)
            audit.record("campaign.paused", f"campaign:{campaign_id}", {"reason": str(exc)}, "worker")
            db.session.commit()
            due = run.now() + timedelta(seconds=opts.outage_pause_seconds)
            refresh_numbers(final=True)
            return _wait(campaign_id, due, run, f"Twilio could not be reached: {exc}. Nothing was lost; paused")
        counts = run.counts()
        final = sum(n for status, n in counts.items() if status in FINAL and status != "control")
        if progress:
            progress(final / total, _describe(counts))
        if batch:
            refresh_numbers()
            continue
        if not any(counts.get(s) for s in IN_PROGRESS):
            status = "cancelled" if cancelled else "done"
            _finish(campaign_id, status, run.now())
            refresh_numbers(final=True)
            return {"message": f"Campaign {status}: {_describe(counts)}", "counts": counts}
        due = run.next_due()
        wait = (due - run.now()).total_seconds() if due else opts.lease_seconds
        if wait > opts.max_wait_seconds:
            refresh_numbers(final=True)
            return _wait(campaign_id, due, run, "Waiting", " (quiet hours or retries)")
        opts.sleep(min(max(wait, 0.05), 5.0))


def _wait(campaign_id: int, due: datetime | None, run: SendRun, why: str, note: str = "") -> dict:
    """End this run with the campaign 'waiting' until ``due`` (quiet hours, retries, a Twilio outage),
    its resumption scheduled; the summary says until when."""
    waiting = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status != "cancelled")
        .values(status="waiting", scheduled_for=due),
        execution_options=NO_SYNC,
    )
    db.session.commit()
    counts = run.counts()
    local = due.astimezone(run.default_tz) if due else None
    when = f" until {local:%Y-%m-%d %H:%M %Z}" if local else ""
    resumes = _schedule_after_run(campaign_id, due) if waiting.rowcount == 1 and due else False
    how = "resumes by itself" if resumes else "resume it with `flask campaign resume`"
    return {
        "message": f"{why}{when}{note}, {how}: {_describe(counts)}",
        "counts": counts,
        "waiting_until": due.isoformat() if due else None,
    }


def _schedule_after_run(campaign_id: int, due: datetime) -> bool:
    """Schedule the resumption of a run that ended waiting; False (logged) when the job runner
    refused (e.g. Redis down): the campaign stays waiting for cron or a manual resume."""
    try:
        schedule_resume(campaign_id, due)
    except Exception:
        db.session.rollback()
        log.exception("could not schedule the resumption of campaign %s", campaign_id)
        return False
    return True


def _release(run: SendRun) -> None:
    """Give this worker's claimed rows back (the campaign stopped before they were sent)."""
    db.session.rollback()
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.claimed_by == run.token)
        .values(
            status=case(
                (OutboxMessage.status == "checking", "in_doubt"),
                (OutboxMessage.status == "sending", "in_doubt"),
                else_="pending",
            ),
            claimed_by=None,
            next_attempt_at=None,
        ),
        execution_options=NO_SYNC,
    )
    db.session.commit()


def _finish(campaign_id: int, status: str, now: datetime) -> None:
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id)
        .values(status=status, finished_at=now if status in ("done", "cancelled") else None),
        execution_options=NO_SYNC,
    )
    db.session.commit()


def _describe(counts: Mapping[str, int]) -> str:
    order = (
        "sent",
        "delivered",
        "dry-run",
        "undelivered",
        "failed",
        "skipped",
        "unknown",
        "cancelled",
        "pending",
        "in_doubt",
        "control",
    )
    parts = [f"{counts[s]} {s.replace('_', ' ')}" for s in order if counts.get(s)]
    busy = sum(counts.get(s, 0) for s in ("claimed", "sending", "checking"))
    if busy:
        parts.append(f"{busy} in progress")
    return ", ".join(parts) or "nothing to send"
