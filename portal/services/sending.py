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
"""
from __future__ import annotations

import logging
import os
import socket
import time as _time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from flask import current_app, has_request_context, url_for
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from portal import jobs, sms
from portal.extensions import db
from portal.models import Campaign, Customer, Job, OutboxMessage, SmsEvent, Store
from portal.services import audit, settings
from portal.services.customers import set_consent

log = logging.getLogger(__name__)

SEND_JOB = "portal.services.sending.send_campaign_job"
RESUME_JOB = "portal.services.sending.resume_campaign_job"
IN_PROGRESS = ("pending", "claimed", "sending", "in_doubt", "checking")
DELIVERED_LIKE = ("sent", "delivered", "undelivered", "failed")
FINAL = ("sent", "delivered", "undelivered", "failed", "skipped", "cancelled", "unknown", "dry-run", "control")
GIVE_UP_LOOKUPS_AFTER = timedelta(days=1)
NO_SYNC = {"synchronize_session": False}  # each step commits and re-reads; no ORM bookkeeping


class CampaignStopped(Exception):
    """The campaign cannot go on (account or sender problem); the message is for the user."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


@dataclass
class SendOptions:
    """Knobs of one sending run. Defaults come from settings; tests shorten the waits.

    Attributes (seconds unless said otherwise):
        rate_per_second: messages per second (per worker).
        lease_seconds: after this, a claimed/sending row of a silent worker is taken over.
        lookup_delay_seconds: wait before asking Twilio whether an in-doubt send exists.
        backoff_base_seconds / backoff_max_seconds: retry backoff for temporary errors (doubling).
        max_attempts: sends per row before a temporary error becomes permanent.
        max_wait_seconds: a run that would wait longer (quiet hours, backoff) ends; the campaign
            is 'waiting' with scheduled_for set and a job scheduled to resume it then
            (``schedule_resume``); ``flask campaign resume`` from cron also picks it up.
        now / sleep / monotonic: the clock, the sleeper and the rate limiter's timer (tests
            inject a frozen clock).
    """

    rate_per_second: float = 5.0
    batch_size: int = 50
    lease_seconds: float = 120.0
    lookup_delay_seconds: float = 60.0
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 600.0
    max_attempts: int = 8
    max_wait_seconds: float = 300.0
    quiet_start: str = "21:00"
    quiet_end: str = "08:00"
    frequency_cap_days: int = 7
    now: Callable[[], datetime] = field(default=utcnow, repr=False)
    sleep: Callable[[float], None] = field(default=_time.sleep, repr=False)
    monotonic: Callable[[], float] = field(default=_time.monotonic, repr=False)


TUNABLE = {f.name for f in fields(SendOptions)} - {"now", "sleep", "monotonic"}


def options_from_settings(overrides: Mapping | None = None) -> SendOptions:
    """SendOptions from the sms.* settings, then app.config SMS_SEND_OPTIONS, then ``overrides``."""
    values = settings.all_values()
    opts = SendOptions(rate_per_second=float(values["sms.rate_per_second"]),
                       quiet_start=values["sms.quiet_start"], quiet_end=values["sms.quiet_end"],
                       frequency_cap_days=int(values["sms.frequency_cap_days"]))
    for source in (current_app.config.get("SMS_SEND_OPTIONS") or {}, overrides or {}):
        opts = replace(opts, **{k: v for k, v in source.items() if k in TUNABLE})
    return opts


# --- quiet hours -----------------------------------------------------------------------------

def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def is_quiet(local: datetime, quiet_start: str, quiet_end: str) -> bool:
    """True when the local wall time falls in quiet hours (e.g. 21:00 → 08:00, over midnight).

    Equal start and end (e.g. 00:00 and 00:00) mean no quiet hours at all.
    """
    start, end, now = _hhmm(quiet_start), _hhmm(quiet_end), local.time().replace(tzinfo=None)
    if start == end:
        return False
    if start > end:
        return now >= start or now < end
    return start <= now < end


def window_opens(now: datetime, tz: ZoneInfo, quiet_start: str, quiet_end: str) -> datetime:
    """When sending may start in ``tz`` (UTC): ``now`` outside quiet hours, else the end of them."""
    local = now.astimezone(tz)
    if not is_quiet(local, quiet_start, quiet_end):
        return now
    end = _hhmm(quiet_end)
    opens = datetime.combine(local.date(), end, tzinfo=tz)
    if opens <= local:
        opens = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=tz)
    return opens.astimezone(timezone.utc)


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except Exception:
        return ZoneInfo("UTC")


# --- starting, resuming ----------------------------------------------------------------------

def status_callback_url() -> str | None:
    """PUBLIC_BASE_URL + /sms/status, else the current request's host; None from a bare CLI."""
    base = (current_app.config.get("PUBLIC_BASE_URL") or "").strip().rstrip("/")
    if base:
        return base + "/sms/status"
    if has_request_context():
        return url_for("webhooks.sms_status", _external=True)
    return None


def start_send(campaign_id: int, user_email: str | None = None, options: Mapping | None = None,
               due_by: datetime | None = None) -> Job:
    """Queue a campaign's sending as a background job (also resumes a stopped or waiting one).

    A 'waiting' campaign becomes 'queued' by one compare-and-set UPDATE, so resumes racing each
    other (two timers, a timer and cron, a server start) queue one job; the others get
    CampaignError. ``due_by`` (given by automatic resumes): act only on a campaign that is
    'waiting' and due by then, so a resume armed for an earlier time leaves a campaign that has
    since been resumed, stopped or re-scheduled alone.

    Raises CampaignError when the campaign is finished, cancelled, no longer waiting for this
    resume, or has nothing left to send.
    """
    from portal.services.campaigns import CampaignError

    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"No campaign {campaign_id}.")
    if campaign.status in ("cancelled", "done"):
        raise CampaignError(f"Campaign {campaign_id} is {campaign.status}; nothing more will be sent.")
    left = db.session.scalar(select(func.count()).where(
        OutboxMessage.campaign_id == campaign_id, OutboxMessage.status.in_(IN_PROGRESS)))
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
    return jobs.enqueue(SEND_JOB, f"Send campaign “{campaign.name}”", user_email=user_email, **kwargs)


def _claim_waiting(campaign_id: int, due_by: datetime | None) -> bool:
    """waiting → queued in one UPDATE (not yet committed); True for the one caller that moved it."""
    condition = [Campaign.id == campaign_id, Campaign.status == "waiting"]
    if due_by is not None:
        due_by = _aware(due_by).astimezone(timezone.utc)
        condition.append(or_(Campaign.scheduled_for.is_(None), Campaign.scheduled_for <= due_by))
    result = db.session.execute(update(Campaign).where(*condition).values(status="queued"), execution_options=NO_SYNC)
    return result.rowcount == 1


def resume_due(now: datetime | None = None) -> list[int]:
    """Queue every 'waiting' campaign whose time has come; returns the ids this call queued.

    Campaigns resume by themselves (``schedule_resume``); this catches up after downtime (the
    server runs it when it starts) and stays available for cron: ``flask campaign resume``.
    """
    from portal.services.campaigns import CampaignError

    now = now or utcnow()
    due = db.session.scalars(select(Campaign.id).where(
        Campaign.status == "waiting", or_(Campaign.scheduled_for.is_(None), Campaign.scheduled_for <= now))).all()
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
    due = _aware(due).astimezone(timezone.utc)
    name = db.session.scalar(select(Campaign.name).where(Campaign.id == campaign_id)) or campaign_id
    return jobs.schedule_at(due, RESUME_JOB, f"Resume campaign “{name}”", user_email="scheduler",
                            campaign_id=campaign_id, due=due.isoformat())


def resume_campaign_job(progress, campaign_id: int, due: str | None = None) -> dict:
    """Job entry point (scheduled): resume this campaign if it is still waiting for this time.

    A cancelled, finished or already resumed campaign is left alone (the result says why).
    """
    from portal.services.campaigns import CampaignError

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
    later = db.session.execute(select(Campaign.id, Campaign.scheduled_for).where(
        Campaign.status == "waiting", Campaign.scheduled_for > now)).all()
    scheduled = []
    for campaign_id, due in later:
        if campaign_id not in armed_until or armed_until[campaign_id] < _aware(due):
            schedule_resume(campaign_id, due)
            scheduled.append(campaign_id)
    return {"resumed": resumed, "rearmed": rearmed, "scheduled": scheduled}


def latest_job(campaign_id: int) -> Job | None:
    """The most recent send job of a campaign (for its progress bar and its last message)."""
    for job in db.session.scalars(select(Job).where(Job.func == SEND_JOB).order_by(Job.created_at.desc()).limit(200)):
        if (job.kwargs or {}).get("campaign_id") == campaign_id:
            return jobs.get(job.id)
    return None


def send_campaign_job(progress, campaign_id: int, callback_url: str | None = None,
                      options: Mapping | None = None) -> dict:
    """Job entry point (portal.jobs): send with the configured gateway; JobError when stopped."""
    gateway = sms.gateway_from_config(current_app.config)
    try:
        return send_campaign(campaign_id, gateway, options_from_settings(options), progress, callback_url)
    except CampaignStopped as exc:
        raise jobs.JobError(str(exc)) from None


# --- the run ---------------------------------------------------------------------------------

class _Run:
    """One worker's pass over a campaign. Every state change is its own committed UPDATE."""

    def __init__(self, campaign: Campaign, gateway, opts: SendOptions, callback_url: str | None):
        self.campaign_id = campaign.id
        self.created_at = _aware(campaign.created_at)
        self.gateway = gateway
        self.opts = opts
        self.callback_url = callback_url
        self.token = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.next_send = 0.0  # monotonic time of the next allowed send (rate limit)
        self.stores = {s.id: s for s in db.session.scalars(select(Store))}
        self.default_tz = _zone(self.stores[campaign.store_id].timezone) if campaign.store_id in self.stores else _zone("UTC")

    # ---- helpers
    def now(self) -> datetime:
        return self.opts.now()

    def _cas(self, row_id: int, expected: tuple[str, ...], **values) -> bool:
        """Compare-and-set one row held by this worker; commit; True when it applied."""
        result = db.session.execute(update(OutboxMessage).where(
            OutboxMessage.id == row_id, OutboxMessage.claimed_by == self.token,
            OutboxMessage.status.in_(expected)).values(**values), execution_options=NO_SYNC)
        db.session.commit()
        return result.rowcount == 1

    def _store_filter(self, store_ids: list[int | None]):
        column = Customer.store_id
        known = [s for s in store_ids if s is not None]
        clauses = [column.in_(known)] if known else []
        if None in store_ids:
            clauses.append(column.is_(None))
            clauses.append(column.notin_(list(self.stores)) if self.stores else column.isnot(None))
        return or_(*clauses) if clauses else column.is_(None) & column.isnot(None)

    # ---- recovery and quiet hours
    def recover(self) -> None:
        """Take back rows of dead workers: claimed → pending, checking/stale sending → in doubt."""
        now = self.now()
        base = update(OutboxMessage).where(OutboxMessage.campaign_id == self.campaign_id)
        db.session.execute(base.where(OutboxMessage.status == "claimed", OutboxMessage.next_attempt_at < now)
                           .values(status="pending", claimed_by=None, next_attempt_at=now), execution_options=NO_SYNC)
        db.session.execute(base.where(OutboxMessage.status == "checking", OutboxMessage.next_attempt_at < now)
                           .values(status="in_doubt", claimed_by=None, next_attempt_at=now), execution_options=NO_SYNC)
        stale = now - timedelta(seconds=self.opts.lease_seconds)
        db.session.execute(base.where(OutboxMessage.status == "sending", OutboxMessage.claimed_at < stale)
                           .values(status="in_doubt", claimed_by=None, next_attempt_at=now,
                                   error_message="worker stopped during the send; checking with Twilio"), execution_options=NO_SYNC)
        db.session.commit()

    def open_stores(self) -> list[int | None]:
        """Store ids (None: customers without a known store) where it is not quiet hours now;
        rows of the others get next_attempt_at = their window's start."""
        now = self.now()
        zones: dict[int | None, ZoneInfo] = {sid: _zone(s.timezone) for sid, s in self.stores.items()}
        zones[None] = self.default_tz
        open_ids: list[int | None] = []
        for sid, tz in zones.items():
            opens = window_opens(now, tz, self.opts.quiet_start, self.opts.quiet_end)
            if opens <= now:
                open_ids.append(sid)
                continue
            customers = select(Customer.id).where(self._store_filter([sid]))
            db.session.execute(update(OutboxMessage).where(
                OutboxMessage.campaign_id == self.campaign_id,
                OutboxMessage.status.in_(("pending", "in_doubt")),
                or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at < opens),
                OutboxMessage.customer_id.in_(customers)).values(next_attempt_at=opens), execution_options=NO_SYNC)
        db.session.commit()
        return open_ids

    # ---- claiming
    def claim(self, open_ids: list[int | None], limit: int) -> list:
        """Atomically take up to ``limit`` due rows (pending → claimed, in_doubt → checking)."""
        if not open_ids:
            return []
        now = self.now()
        due = (select(OutboxMessage.id)
               .join(Customer, Customer.id == OutboxMessage.customer_id)
               .where(OutboxMessage.campaign_id == self.campaign_id,
                      OutboxMessage.status.in_(("pending", "in_doubt")),
                      or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now),
                      self._store_filter(open_ids))
               .order_by(OutboxMessage.id).limit(limit))
        if db.engine.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True, of=OutboxMessage)
        lease_until = now + timedelta(seconds=self.opts.lease_seconds)
        db.session.execute(update(OutboxMessage).where(
            OutboxMessage.id.in_(due), OutboxMessage.status.in_(("pending", "in_doubt"))).values(
            status=case((OutboxMessage.status == "pending", "claimed"), else_="checking"),
            claimed_by=self.token, next_attempt_at=lease_until), execution_options=NO_SYNC)
        db.session.commit()
        # Plain rows (not ORM objects): a snapshot that commits do not expire.
        return list(db.session.execute(select(
            OutboxMessage.id, OutboxMessage.customer_id, OutboxMessage.phone, OutboxMessage.body,
            OutboxMessage.status, OutboxMessage.attempts, OutboxMessage.claimed_at, OutboxMessage.error_message,
        ).where(OutboxMessage.claimed_by == self.token, OutboxMessage.status.in_(("claimed", "checking")))
            .order_by(OutboxMessage.id)))

    # ---- one row
    def still_allowed(self, row: OutboxMessage) -> str | None:
        """Why a claimed row may no longer be sent (opt-out since creation, cap, erasure), or None."""
        customer = db.session.get(Customer, row.customer_id)
        if customer is None or customer.erased_at is not None:
            return "customer erased"
        if customer.sms_consent == "opted_out":
            return "opted out after the campaign was created"
        if customer.sms_consent != "opted_in":
            return "no recorded opt-in"
        last = _aware(customer.last_sms_at)
        cap = self.opts.frequency_cap_days
        if cap and last is not None and last > self.created_at and last > self.now() - timedelta(days=cap):
            return "messaged by another campaign within the frequency cap"
        return None

    def process(self, row: OutboxMessage, cancelled: bool) -> None:
        if row.status == "checking":
            if not self.resolve(row, cancelled):
                return
        else:
            if cancelled:
                self._cas(row.id, ("claimed",), status="cancelled", claimed_by=None, next_attempt_at=None)
                return
            reason = self.still_allowed(row)
            if reason:
                self._cas(row.id, ("claimed",), status="skipped", error_message=reason, claimed_by=None,
                          next_attempt_at=None)
                return
        self.wait_for_rate()
        attempt_at = self.now()
        if not self._cas(row.id, ("claimed", "checking"), status="sending", claimed_at=attempt_at,
                         attempts=OutboxMessage.attempts + 1, next_attempt_at=None):
            return  # another worker took the row over (our lease expired)
        result = self.gateway.send(row.phone, row.body, status_callback=self.callback_url)
        self.record(row, result, attempts=(row.attempts or 0) + 1)

    def resolve(self, row: OutboxMessage, cancelled: bool) -> bool:
        """An in-doubt row: record the SID if Twilio has the message; True when it must be sent."""
        now = self.now()
        since = min(self.created_at, _aware(row.claimed_at) or self.created_at) - timedelta(minutes=1)
        try:
            sid = self.gateway.find_sent(row.phone, row.body, since)
        except sms.SmsLookupError as exc:
            age = now - (_aware(row.claimed_at) or now)
            if age > GIVE_UP_LOOKUPS_AFTER:
                self._cas(row.id, ("checking",), status="unknown", claimed_by=None, next_attempt_at=None,
                          error_message=f"could not learn from Twilio whether it was sent: {exc}"[:400])
            else:
                wait = min(max(self.opts.lookup_delay_seconds, age.total_seconds() / 2), self.opts.backoff_max_seconds)
                self._cas(row.id, ("checking",), status="in_doubt", claimed_by=None,
                          next_attempt_at=now + timedelta(seconds=wait),
                          error_message=f"lookup failed, will ask again: {exc}"[:400])
            return False
        if sid:
            self._record_sent(row, sid, "sent", dry_run=False, expected=("checking",))
            return False
        if cancelled:
            self._cas(row.id, ("checking",), status="cancelled", claimed_by=None, next_attempt_at=None)
            return False
        if (row.attempts or 0) >= self.opts.max_attempts:
            self._cas(row.id, ("checking",), status="failed", claimed_by=None, next_attempt_at=None,
                      error_message=f"not sent after {row.attempts} attempts: {row.error_message or ''}"[:400])
            return False
        return True

    def wait_for_rate(self) -> None:
        gap = 1.0 / self.opts.rate_per_second if self.opts.rate_per_second > 0 else 0.0
        now = self.opts.monotonic()
        if self.next_send > now:
            self.opts.sleep(self.next_send - now)
            now = self.opts.monotonic()
        self.next_send = max(self.next_send, now) + gap

    def record(self, row: OutboxMessage, result: sms.SendResult, attempts: int) -> None:
        """Store what the send did; decide retry, doubt, failure or stop."""
        now = self.now()
        error = {"error_code": result.error_code, "error_message": (result.error_message or "")[:400] or None}
        if result.accepted:
            self._record_sent(row, result.sid, "dry-run" if result.dry_run else "sent", result.dry_run, ("sending",),
                              error_code=result.error_code)
        elif result.account_error:
            self._cas(row.id, ("sending",), status="pending", attempts=OutboxMessage.attempts - 1,
                      claimed_by=None, next_attempt_at=None, **error)
            raise CampaignStopped(
                f"Twilio refused the account or sender ({result.error_code or result.http_status}: "
                f"{result.error_message}). Sending stopped; fix the Twilio settings and send again.")
        elif result.retryable and result.maybe_sent:
            self._cas(row.id, ("sending",), status="in_doubt", claimed_by=None,
                      next_attempt_at=now + timedelta(seconds=self.opts.lookup_delay_seconds), **error)
        elif result.retryable:
            if attempts >= self.opts.max_attempts:
                self._cas(row.id, ("sending",), status="failed", claimed_by=None, next_attempt_at=None, **error)
            else:
                delay = min(self.opts.backoff_base_seconds * 2 ** (attempts - 1), self.opts.backoff_max_seconds)
                self._cas(row.id, ("sending",), status="pending", claimed_by=None,
                          next_attempt_at=now + timedelta(seconds=delay), **error)
        else:
            if self._cas(row.id, ("sending",), status="failed", claimed_by=None, next_attempt_at=None, **error) \
                    and result.opted_out:
                customer = db.session.get(Customer, row.customer_id)
                if customer is not None and customer.sms_consent != "opted_out":
                    set_consent(customer, "opted_out", "twilio_21610", effective_at=now, user_email="twilio",
                                detail=f"Twilio error 21610 sending campaign {self.campaign_id}")
                    db.session.commit()

    def _record_sent(self, row: OutboxMessage, sid: str, status: str, dry_run: bool,
                     expected: tuple[str, ...], error_code: int | None = None) -> None:
        now = self.now()
        values = dict(status=status, message_sid=sid, sent_at=now, claimed_by=None, next_attempt_at=None,
                      error_code=error_code, error_message=None)
        try:
            result = db.session.execute(update(OutboxMessage).where(
                OutboxMessage.id == row.id, OutboxMessage.claimed_by == self.token,
                OutboxMessage.status.in_(expected)).values(**values), execution_options=NO_SYNC)
            if result.rowcount == 1 and not dry_run:
                db.session.execute(update(Customer).where(Customer.id == row.customer_id).values(last_sms_at=now), execution_options=NO_SYNC)
                apply_pending_events(sid)
            db.session.commit()
        except IntegrityError:  # a SID already on another row: keep the fact it was sent
            db.session.rollback()
            values.update(message_sid=None, error_message=f"gateway returned a SID already recorded: {sid}")
            self._cas(row.id, expected, **values)

    # ---- bookkeeping
    def counts(self) -> dict[str, int]:
        rows = db.session.execute(select(OutboxMessage.status, func.count()).where(
            OutboxMessage.campaign_id == self.campaign_id).group_by(OutboxMessage.status))
        return dict(rows.all())

    def next_due(self) -> datetime | None:
        """Earliest moment a row not yet final may need this worker (due, lease expiry)."""
        pending = db.session.scalar(select(func.min(OutboxMessage.next_attempt_at)).where(
            OutboxMessage.campaign_id == self.campaign_id,
            OutboxMessage.status.in_(("pending", "in_doubt", "claimed", "checking"))))
        sending = db.session.scalar(select(func.min(OutboxMessage.claimed_at)).where(
            OutboxMessage.campaign_id == self.campaign_id, OutboxMessage.status == "sending"))
        candidates = [_aware(pending)] if pending is not None else []
        if sending is not None:
            candidates.append(_aware(sending) + timedelta(seconds=self.opts.lease_seconds))
        has_undated = db.session.scalar(select(func.count()).where(
            OutboxMessage.campaign_id == self.campaign_id, OutboxMessage.status.in_(("pending", "in_doubt")),
            OutboxMessage.next_attempt_at.is_(None)))
        if has_undated:
            candidates.append(self.now())
        return min(candidates) if candidates else None


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
    run = _Run(campaign, gateway, opts, callback_url)
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
            waiting = db.session.execute(update(Campaign).where(Campaign.id == campaign_id, Campaign.status != "cancelled")
                                         .values(status="waiting", scheduled_for=due), execution_options=NO_SYNC)
            db.session.commit()
            local = due.astimezone(run.default_tz) if due else None
            when = f" until {local:%Y-%m-%d %H:%M %Z}" if local else ""
            resumes = _schedule_after_run(campaign_id, due) if waiting.rowcount == 1 and due else False
            how = "resumes by itself" if resumes else "resume it with `flask campaign resume`"
            return {"message": f"Waiting{when} (quiet hours or retries), {how}: {_describe(counts)}",
                    "counts": counts, "waiting_until": due.isoformat() if due else None}
        opts.sleep(min(max(wait, 0.05), 5.0))


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


def _release(run: _Run) -> None:
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


# --- status callbacks ------------------------------------------------------------------------

#: Twilio message statuses → outbox status, with a rank so a late "sent" never undoes "delivered".
STATUS_MAP = {
    "accepted": ("sent", 1), "scheduled": ("sent", 1), "queued": ("sent", 1), "sending": ("sent", 2),
    "sent": ("sent", 3), "delivered": ("delivered", 5), "read": ("delivered", 5),
    "undelivered": ("undelivered", 4), "failed": ("failed", 4), "canceled": ("failed", 4),
}
_RANK = {"sent": 3, "dry-run": 3, "undelivered": 4, "failed": 4, "delivered": 5}


def apply_status(message: OutboxMessage, status: str, error_code: int | None, at: datetime) -> bool:
    """Apply one status callback to an outbox row (never moving it backwards); True if it changed.

    The caller commits. A failure with 21610 also records the customer's opt-out.
    """
    mapped = STATUS_MAP.get((status or "").lower())
    if mapped is None or message.status not in _RANK:
        return False
    new, rank = mapped
    if rank < _RANK.get(message.status, 0) or (new == message.status and error_code == message.error_code):
        return False
    message.status = new
    if error_code is not None:
        message.error_code = error_code
    if new == "delivered" and message.delivered_at is None:
        message.delivered_at = at
    if error_code == sms.OPT_OUT_ERROR_CODE:
        customer = db.session.get(Customer, message.customer_id)
        if customer is not None and customer.sms_consent != "opted_out":
            set_consent(customer, "opted_out", "twilio_21610", effective_at=at, user_email="twilio",
                        detail=f"Twilio error 21610 on message {message.message_sid}")
    return True


def apply_pending_events(sid: str) -> None:
    """Apply status callbacks that arrived before the send was recorded (caller commits)."""
    message = db.session.scalar(select(OutboxMessage).where(OutboxMessage.message_sid == sid)
                                .execution_options(populate_existing=True))
    if message is None:
        return
    events = db.session.scalars(select(SmsEvent).where(
        SmsEvent.kind == "status", SmsEvent.message_sid == sid, SmsEvent.applied.is_(False)).order_by(SmsEvent.id))
    for event in events:
        apply_status(message, event.status, event.error_code, _aware(event.received_at))
        event.applied = True
