"""The job ``flows.run``: after every rescore (nightly or an import's) and once a day by itself."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone

from flask import current_app
from sqlalchemy import select

from portal import jobs, sms
from portal.extensions import db
from portal.models import Flow, Job
from portal.services.flows import runner

log = logging.getLogger(__name__)

JOB = "flows.run"
DAY = timedelta(hours=24)


def _any_enabled() -> bool:
    return db.session.scalar(select(Flow.id).where(Flow.enabled.is_(True)).limit(1)) is not None


def _pending(status: str) -> Job | None:
    return db.session.scalar(select(Job).where(Job.func == JOB, Job.status == status).limit(1))


def request_run() -> Job | None:
    """Ask for a run now unless no flow is on or a run is already queued; never raises. From a web request
    or the CLI only: a job must not enqueue another on the embedded runner (its child process holds the
    job lock the new job would wait for)."""
    try:
        if not _any_enabled() or _pending("queued") is not None:
            return None
        return jobs.enqueue(JOB, "Automations: daily run", scope_store_id=None)
    except Exception:
        db.session.rollback()
        log.exception("could not start the automations run")
        return None


def run_after_rescore() -> dict | None:
    """The end of every rescore (nightly or an import's): run the enabled flows on the new scores, in the
    rescoring job itself (as the dashboard summary refresh is). A failure is logged, never fails the rescore."""
    try:
        if not _any_enabled():
            return None
        gateway = sms.gateway_from_config(current_app.config)
        runs = runner.run_all(gateway=gateway)
        return {"entered": sum(r.entered for r in runs)}
    except Exception:
        db.session.rollback()
        log.exception("automations run after the rescore failed")
        return None


def ensure_scheduled(when: datetime | None = None) -> Job | None:
    """Keep one scheduled daily run (24 h from now unless ``when``) while any flow is on; never raises."""
    try:
        if not _any_enabled() or _pending("scheduled") is not None:
            return None
        when = when or datetime.now(timezone.utc) + DAY
        return jobs.schedule_at(when, JOB, "Automations: daily run", scope_store_id=None)
    except Exception:
        db.session.rollback()
        log.exception("could not schedule the automations run")
        return None


@jobs.job(JOB)
def run_job(progress, store_id: int | None = None, day: str | None = None) -> dict:
    """Run every enabled flow (idempotent within an episode), then schedule tomorrow's run."""
    gateway = sms.gateway_from_config(current_app.config)
    runs = runner.run_all(day=date.fromisoformat(day) if day else None, store_id=store_id, gateway=gateway)
    if current_app.config.get("REDIS_URL") or current_app.config.get("JOBS_INLINE"):
        # Tomorrow's run: RQ keeps it in Redis. Embedded, this runs in a child process whose timer would die
        # with it: the web process schedules instead (switching a flow on), and rescoring and cron run it too.
        ensure_scheduled()
    entered = sum(r.entered for r in runs)
    return {
        "message": f"Automations: {entered} customers entered in {len(runs)} flows. "
        + " · ".join(r.line() for r in runs if r.candidates),
        "entered": entered,
    }
