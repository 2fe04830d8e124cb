"""Sending a campaign: claim → mark sending → send → record, exactly once per recipient.

How exactly-once works (Twilio has no idempotency key on message creation)
---------------------------------------------------------------------------
Every recipient is one outbox row, fixed when the campaign was created, and every body carries
that recipient's unique coupon code, so a body identifies one message. A worker moves a row
through these states, each change a compare-and-set UPDATE (``WHERE status = … AND
claimed_by = <this worker's token>``) committed on its own:

``pending`` → ``claimed`` (a batch, atomically: ``UPDATE … WHERE id IN (SELECT … LIMIT n)
AND status = 'pending'``, with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL) → ``sending``
(committed *before* the HTTP request, with the attempt time in ``claimed_at``) → the request →
``sent`` with the SID (or ``failed`` with Twilio's error, or back to ``pending`` with a backoff
for a 429 or a refused connection, which certainly sent nothing).

A worker can die (kill -9, a lost host) at any point. ``claimed`` rows of a dead worker sent
nothing: once their lease expires they return to ``pending``. A ``sending`` row is **in doubt**:
the request may or may not have reached Twilio. So are rows whose answer was lost
(``maybe_sent``: read timeout, dropped connection, 5xx). Such a row goes to ``in_doubt`` and is
never resent blindly: a worker claims it (``checking``) and asks Twilio with
``gateway.find_sent(to, body, since)`` — the list of recent messages to that number, matched on
the exact body. Found: the SID is recorded and the row is ``sent``. Not found, and the lookup
answered (it is authoritative: Twilio lists a message as soon as it has created it, and we look
only after ``lookup_delay`` so a request still in flight has landed): the row is sent again.
The lookup failed: the row stays in doubt and is asked about again later (after a day it is
marked ``unknown`` for a person to check, and never resent). A ``sending`` row is taken over
only after ``lease_seconds`` (default 120 s, far above the HTTP timeout), so a live worker's
request is never second-guessed. Each step commits before the next, so the database always
says which of these cases a row is in; the worst a crash can cost is one lookup.

Other rules applied here: a row is sent only when its customer still has an opt-in, is not
erased and was not messaged by another campaign within the frequency cap (else ``skipped``);
quiet hours per store time zone (rows wait with ``next_attempt_at`` = the window's start; a
run that would wait long ends with the campaign 'waiting' and schedules its own resumption);
a rate limit in messages per second (per worker); Twilio error 21610 records an opt-out;
an account error (bad credentials, invalid sender) stops the campaign instead of failing every
recipient; without credentials the dry-run gateway marks rows ``dry-run`` with their exact body.

Outbox statuses: pending, claimed, sending, in_doubt, checking (in progress) · sent, delivered,
undelivered, failed, skipped, cancelled, unknown, dry-run, control (final).

Where the parts live: this module drives a campaign's runs (``send_campaign``, the job entry
``send_campaign_job``); portal/services/send_run.py is one worker's pass over the rows (the
states above); send_options.py the knobs; quiet_hours.py the windows; resuming.py starting,
scheduling and resuming the jobs; outbox.py the statuses and Twilio's status callbacks. The
names of those modules are re-exported here, so ``portal.services.sending.X`` keeps working
(and the job paths stored in the jobs table keep resolving). Patch a name in the module that
uses it (e.g. ``resuming.start_send``), not here.
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
from portal.services.clock import utcnow
from portal.services.outbox import (DELIVERED_LIKE, FINAL, IN_PROGRESS, NO_SYNC, STATUS_MAP, apply_pending_events,
                                    apply_status)
from portal.services.quiet_hours import is_quiet, window_opens
from portal.services.resuming import (RESUME_JOB, SEND_JOB, latest_job, resume_campaign_job, resume_due,
                                      resume_on_start, schedule_resume, start_send, status_callback_url)
from portal.services.send_options import TUNABLE, SendOptions, options_from_settings
from portal.services.send_run import GIVE_UP_LOOKUPS_AFTER, CampaignStopped, SendRun, TwilioUnreachable

__all__ = [
    "CampaignStopped", "DELIVERED_LIKE", "FINAL", "GIVE_UP_LOOKUPS_AFTER", "IN_PROGRESS", "NO_SYNC", "RESUME_JOB",
    "SEND_JOB", "STATUS_MAP", "TUNABLE", "SendOptions", "apply_pending_events", "apply_status", "is_quiet",
    "latest_job", "options_from_settings", "resume_campaign_job", "resume_due", "resume_on_start",
    "schedule_resume", "send_campaign", "send_campaign_job", "start_send", "status_callback_url", "utcnow",
    "window_opens",
]

log = logging.getLogger(__name__)


def send_campaign_job(progress, campaign_id: int, callback_url: str | None = None,
                      options: Mapping | None = None) -> dict:
    """Job entry point (portal.jobs): send with the configured gateway; JobError when stopped."""
    gateway = sms.gateway_from_config(current_app.config)
    try:
        return send_campaign(campaign_id, gateway, options_from_settings(options), progress, callback_url)
    except CampaignStopped as exc:
        raise jobs.JobError(str(exc)) from None



def send_campaign(campaign_id: int, gateway: sms.SmsGateway | None = None, opts: SendOptions | None = None,
                  progress: Callable[[float, str | None], None] | None = None,
                  callback_url: str | None = None) -> dict:
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
    if campaign.status != "cancelled":
        campaign.status = "sending"
        campaign.started_at = campaign.started_at or run.now()
        db.session.commit()
    total = db.session.scalar(select(func.count()).where(
        OutboxMessage.campaign_id == campaign_id, OutboxMessage.group == "message")) or 1
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
            raise
        except TwilioUnreachable as exc:
            _release(run)
            audit.record("campaign.paused", f"campaign:{campaign_id}", {"reason": str(exc)}, "worker")
            db.session.commit()
            due = run.now() + timedelta(seconds=opts.outage_pause_seconds)
            return _wait(campaign_id, due, run, f"Twilio could not be reached: {exc}. Nothing was lost; paused")
        counts = run.counts()
        final = sum(n for status, n in counts.items() if status in FINAL and status != "control")
        if progress:
            progress(final / total, _describe(counts))
        if batch:
            continue
        if not any(counts.get(s) for s in IN_PROGRESS):
            status = "cancelled" if cancelled else "done"
            _finish(campaign_id, status, run.now())
            return {"message": f"Campaign {status}: {_describe(counts)}", "counts": counts}
        due = run.next_due()
        wait = (due - run.now()).total_seconds() if due else opts.lease_seconds
        if wait > opts.max_wait_seconds:
            return _wait(campaign_id, due, run, "Waiting", " (quiet hours or retries)")
        opts.sleep(min(max(wait, 0.05), 5.0))


def _wait(campaign_id: int, due: datetime | None, run: SendRun, why: str, note: str = "") -> dict:
    """End this run with the campaign 'waiting' until ``due`` (quiet hours, retries, a Twilio outage),
    its resumption scheduled; the summary says until when."""
    waiting = db.session.execute(update(Campaign).where(Campaign.id == campaign_id, Campaign.status != "cancelled")
                                 .values(status="waiting", scheduled_for=due), execution_options=NO_SYNC)
    db.session.commit()
    counts = run.counts()
    local = due.astimezone(run.default_tz) if due else None
    when = f" until {local:%Y-%m-%d %H:%M %Z}" if local else ""
    resumes = _schedule_after_run(campaign_id, due) if waiting.rowcount == 1 and due else False
    how = "resumes by itself" if resumes else "resume it with `flask campaign resume`"
    return {"message": f"{why}{when}{note}, {how}: {_describe(counts)}",
            "counts": counts, "waiting_until": due.isoformat() if due else None}


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
    db.session.execute(update(OutboxMessage).where(OutboxMessage.claimed_by == run.token).values(
        status=case((OutboxMessage.status == "checking", "in_doubt"), (OutboxMessage.status == "sending", "in_doubt"),
                    else_="pending"), claimed_by=None, next_attempt_at=None), execution_options=NO_SYNC)
    db.session.commit()


def _finish(campaign_id: int, status: str, now: datetime) -> None:
    db.session.execute(update(Campaign).where(Campaign.id == campaign_id).values(
        status=status, finished_at=now if status in ("done", "cancelled") else None), execution_options=NO_SYNC)
    db.session.commit()


def _describe(counts: Mapping[str, int]) -> str:
    order = ("sent", "delivered", "dry-run", "undelivered", "failed", "skipped", "unknown", "cancelled",
             "pending", "in_doubt", "control")
    parts = [f"{counts[s]} {s.replace('_', ' ')}" for s in order if counts.get(s)]
    busy = sum(counts.get(s, 0) for s in ("claimed", "sending", "checking"))
    if busy:
        parts.append(f"{busy} in progress")
    return ", ".join(parts) or "nothing to send"
