"""Background jobs: run a function named by dotted path, in a thread or on RQ workers.

The only module that knows whether RQ or a thread runs the work. Job state lives in the
``jobs`` table so any web worker can show it. Embedded default (no REDIS_URL): one worker
thread per process (gunicorn runs a single process then). With REDIS_URL: RQ on Redis, any
number of ``flask worker`` processes. ``JOBS_INLINE`` (tests) runs the job at once.

A job function has the signature ``fn(progress, **kwargs) -> dict | None`` where
``progress(fraction, message)`` records progress. Report progress outside a long write
transaction (SQLite allows one writer at a time). Raise ``JobError`` for a failure whose
message the user should see; any other exception is logged and shown as a generic failure.
"""
from __future__ import annotations

import importlib
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from flask import Flask, current_app
from sqlalchemy import update

from portal.extensions import db
from portal.models import Job

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 20
STALE_AFTER = timedelta(minutes=5)
QUEUE_NAME = "loyalist"


class JobError(Exception):
    """A job failure with a message meant for the user."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def enqueue(func: str, title: str, user_email: str | None = None, **kwargs) -> Job:
    """Record a job and hand it to the runner; returns the stored Job (status queued)."""
    job = Job(id=str(uuid.uuid4()), func=func, kwargs=kwargs, title=title, user_email=user_email, status="queued")
    db.session.add(job)
    db.session.commit()
    app = current_app._get_current_object()
    if app.config.get("JOBS_INLINE"):
        run_job(job.id)
    elif app.config.get("REDIS_URL"):
        _rq_queue(app).enqueue("portal.jobs.run_job", job.id, job_id=job.id, job_timeout=6 * 3600,
                               result_ttl=3600, failure_ttl=7 * 24 * 3600)
    else:
        _executor(app).submit(_run_in_app, app, job.id)
    return job


def _rq_queue(app: Flask):
    from redis import Redis
    from rq import Queue

    return Queue(QUEUE_NAME, connection=Redis.from_url(app.config["REDIS_URL"]))


def _executor(app: Flask) -> ThreadPoolExecutor:
    """The process's single job thread, kept on the app (not in a module global)."""
    executor = app.extensions.get("loyalist_jobs")
    if executor is None:
        executor = app.extensions["loyalist_jobs"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobs")
    return executor


def _run_in_app(app: Flask, job_id: str) -> None:
    with app.app_context():
        try:
            run_job(job_id)
        finally:
            db.session.remove()


def _write(job_id: str, **values) -> None:
    """Update a job row in its own short transaction (never inside the job's own work)."""
    with db.engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(**values))


def run_job(job_id: str) -> None:
    """Run a recorded job to completion, keeping its state, progress and heartbeat current."""
    job = db.session.get(Job, job_id)
    if job is None or job.status not in ("queued", "running"):
        return
    func_path, kwargs = job.func, dict(job.kwargs or {})
    db.session.rollback()
    _write(job_id, status="running", started_at=_now(), heartbeat_at=_now(), progress=0.0)
    stop = threading.Event()
    app = current_app._get_current_object()
    beat = threading.Thread(target=_heartbeat, args=(app, job_id, stop), daemon=True)
    beat.start()

    def progress(fraction: float, message: str | None = None) -> None:
        values = {"progress": max(0.0, min(1.0, float(fraction))), "heartbeat_at": _now()}
        if message is not None:
            values["message"] = message
        _write(job_id, **values)

    try:
        module_name, _, attr = func_path.rpartition(".")
        func = getattr(importlib.import_module(module_name), attr)
        result = func(progress=progress, **kwargs)
    except JobError as exc:
        db.session.rollback()
        _write(job_id, status="failed", message=str(exc), finished_at=_now())
    except Exception:
        db.session.rollback()
        log.exception("job %s (%s) failed", job_id, func_path)
        _write(job_id, status="failed", finished_at=_now(),
               message="The job failed with an unexpected error (logged). Nothing it was writing was kept.")
    else:
        _write(job_id, status="done", progress=1.0, finished_at=_now(), result=result or {},
               message=(result or {}).get("message") if isinstance(result, dict) else None)
    finally:
        stop.set()


def _heartbeat(app: Flask, job_id: str, stop: threading.Event) -> None:
    with app.app_context():
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                _write(job_id, heartbeat_at=_now())
            except Exception:  # a busy database: the next beat tries again
                log.debug("heartbeat for %s skipped", job_id)


def get(job_id: str) -> Job | None:
    """A job's state; a running job whose heartbeat stopped is marked failed (never 'running forever')."""
    job = db.session.get(Job, job_id)
    if job is None:
        return None
    if job.status in ("running", "queued"):
        last = job.heartbeat_at or job.created_at
        if last.tzinfo is None:
            last = last.replace(tzinfo=timezone.utc)
        limit = STALE_AFTER if job.status == "running" else timedelta(hours=6)
        if _now() - last > limit:
            _write(job.id, status="failed", finished_at=_now(),
                   message="The worker running this job stopped; nothing it was writing was kept. Start it again.")
            db.session.expire(job)
            job = db.session.get(Job, job_id)
    return job


def as_dict(job: Job) -> dict:
    """The JSON a progress bar polls."""
    return {"id": job.id, "title": job.title, "status": job.status, "progress": job.progress,
            "message": job.message, "result": job.result}
