"""Once an hour, queue ``mail.alerts`` and ``mail.digest`` (through portal.jobs, never in a request), keep the
automations' daily run scheduled and re-arm scheduled jobs whose timer died with its process.

Each web process runs a small timer thread (started from gunicorn's ``post_worker_init``); at every hour
and at start-up it tries to claim the hour: the INSERT of a ``mail_slots`` row is the claim, so with
several processes (or hosts) only one queues that hour's jobs. The jobs go to the embedded runner or to
RQ like any other. Cron can run ``flask mail send-due`` instead or as well: sending is exactly once
per mail whatever runs it.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import delete

from portal import jobs
from portal.extensions import db
from portal.models import MailSlot
from portal.services.clock import utcnow
from portal.services.flows import jobs as flow_jobs
from portal.services.mail import alerts, digest, outbox
from portal.services.summaries import campaigns as campaign_summaries

log = logging.getLogger(__name__)
KEEP_SLOTS = timedelta(days=30)


def claim_hour(now: datetime | None = None) -> bool:
    """Claim this hour's run (True for the one caller whose INSERT made the row)."""
    now = now or utcnow()
    slot = now.strftime("%Y-%m-%dT%H")
    claimed = outbox.inserted(db.session.execute(outbox.insert_ignore(MailSlot).values(slot=slot, claimed_at=now)))
    db.session.execute(delete(MailSlot).where(MailSlot.claimed_at < now - KEEP_SLOTS))
    db.session.commit()
    return claimed


def tick(now: datetime | None = None) -> list[str]:
    """Queue this hour's mail jobs unless another process did; returns the queued job ids."""
    if not claim_hour(now):
        return []
    queued = [
        jobs.enqueue(alerts.JOB, "E-mail alerts", user_email="scheduler"),
        jobs.enqueue(digest.JOB, "Weekly digests", user_email="scheduler"),
    ]
    # Automations run once a day by themselves: a run schedules the next one with RQ, but on the embedded
    # runner the run's child process cannot keep a timer, so this clock keeps one scheduled; and a timer
    # that died with a recycled web process (any scheduled job: flows, campaigns) is armed again here.
    flow_jobs.ensure_scheduled()
    jobs.restore_scheduled()
    campaign_summaries.retry_changed()  # campaign numbers whose refresh could not be queued (Redis down, ...)
    return [job.id for job in queued]


def start(app: Flask) -> bool:
    """Start this process's hourly timer thread (not under JOBS_INLINE, i.e. tests); False if already running."""
    if app.config.get("JOBS_INLINE") or app.extensions.get("loyalist_mail_clock"):
        return False
    thread = threading.Thread(target=_loop, args=(app,), name="mail-clock", daemon=True)
    app.extensions["loyalist_mail_clock"] = thread
    thread.start()
    return True


def _loop(app: Flask) -> None:
    while True:
        try:
            with app.app_context():
                tick()
        except Exception:  # a database hiccup: the next hour tries again; cron's send-due still works
            log.exception("hourly mail jobs not queued")
        now = utcnow()
        following = now.replace(minute=0, second=5, microsecond=0) + timedelta(hours=1)
        threading.Event().wait((following - now).total_seconds())


def send_due(now: datetime | None = None) -> dict:
    """Everything the hourly jobs do, in this process (``flask mail send-due``, for cron)."""
    now = now or utcnow()
    found = alerts.events.scan(now)
    queued_alerts = alerts.build_for_events(now)
    queued_digests = digest.build_due(now)
    sent = outbox.deliver(now=now)
    return {"events": found, "alerts": queued_alerts, "digests": queued_digests, "sent": sent}
