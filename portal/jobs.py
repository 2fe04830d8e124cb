"""Background jobs: run a job declared by name (``@job("import.run")``), in a thread, a child process or on RQ.

The only module that knows whether RQ or a thread runs the work; job state lives in the ``jobs`` table,
which stores the job's name, never a code path, so renaming a function cannot strand a queued job.
How the runners work (one job at a time per database, child processes, nice levels, schedules): docs/jobs.md.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from flask import Flask, current_app
from sqlalchemy import insert, select, update

from portal.extensions import db
from portal.job_processes import database_lock
from portal.models import AuditEntry, Job
from portal.security import user_store_id

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 20
STALE_AFTER = timedelta(minutes=5)
QUEUE_NAME = "loyalist"


class JobError(Exception):
    """A job failure with a message meant for the user."""


JobFunc = Callable[..., "dict | None"]
_REGISTRY: dict[str, JobFunc] = {}
# The modules a child process must import to see the same jobs as its parent (tests declare their own).
MODULES_ENV = "LOYALIST_JOB_MODULES"
# Set on the app in the embedded runner's child process (``flask jobs run``): see ``enqueue``.
CHILD = "loyalist_job_child"


def job(name: str) -> Callable[[JobFunc], JobFunc]:
    """Declare ``fn(progress, **kwargs) -> dict | None`` as the job ``name`` (stored in the jobs table).

    The name is a promise to rows already queued or scheduled: keep it when the function moves or is
    renamed, and add a migration when a name must change.
    """

    def register(fn: JobFunc) -> JobFunc:
        known = _REGISTRY.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"job name {name!r} is declared twice ({known.__module__} and {fn.__module__})")
        _REGISTRY[name] = fn
        return fn

    return register


def names() -> frozenset[str]:
    """Every declared job name."""
    return frozenset(_REGISTRY)


def extra_modules() -> list[str]:
    """Modules outside portal/ that declared jobs in this process (tests do): handed to the process that
    runs the job, which knows the portal's own jobs already (``app.register_jobs``)."""
    return sorted({fn.__module__ for fn in _REGISTRY.values() if not fn.__module__.startswith("portal.")})


def import_modules(modules: str | list[str] | None) -> None:
    """Import the ``modules`` (a list, or comma-separated) another process declared jobs in."""
    if isinstance(modules, str):
        modules = modules.split(",")
    for module in filter(None, modules or ()):
        importlib.import_module(module)


def _lookup(name: str) -> JobFunc:
    if name not in _REGISTRY:
        raise JobError(
            f"This version of Loyalist has no job named “{name}” (renamed or removed since it was "
            "queued); nothing was done. Start it again from its page."
        )
    return _REGISTRY[name]


def _check_declared(name: str) -> None:
    """Refuse to record a job nobody declared (a typo would otherwise fail only when the job runs)."""
    if name not in _REGISTRY:
        raise ValueError(f"no job is declared as {name!r} (see @jobs.job)")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def enqueue(
    name: str, title: str, user_email: str | None = None, *, scope_store_id: int | None = None, **kwargs
) -> Job:
    """Record the job declared as ``name`` and hand it to the runner; returns the stored Job (status queued).

    ``scope_store_id`` is the store whose data the job reads or writes (None: chain-wide), which decides
    who may see the job (``visible_to``); ``kwargs`` go to the job function.

    From a job in the embedded runner's child process the job is only recorded: the child holds the
    database's job lock, so its own job thread would wait for it forever (and keep the child from
    exiting); the parent hands it to its job thread when the child ends (``_take_over``).
    """
    _check_declared(name)
    job = Job(
        id=str(uuid.uuid4()),
        func=name,
        kwargs=kwargs,
        title=title,
        user_email=user_email,
        status="queued",
        store_id=scope_store_id,
    )
    db.session.add(job)
    db.session.commit()
    app = current_app._get_current_object()
    if app.config.get("JOBS_INLINE"):
        run_job(job.id)
    elif app.extensions.get(CHILD):
        pass  # recorded as queued; the parent process runs it after this child (see the docstring)
    elif app.config.get("REDIS_URL"):
        _rq_queue(app).enqueue(
            "portal.jobs.run_job",
            job.id,
            extra_modules(),
            job_id=job.id,
            job_timeout=6 * 3600,
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
        )
    else:
        _executor(app).submit(_run_in_app, app, job.id)
    return job


def schedule_at(
    when_utc: datetime,
    name: str,
    title: str,
    user_email: str | None = None,
    *,
    scope_store_id: int | None = None,
    **kwargs,
) -> Job:
    """Record the job ``name`` to run at ``when_utc`` (aware, UTC) and arm it; returns the stored Job.

    The row is written first (status ``scheduled``, ``heartbeat_at`` = when it is due). RQ keeps the
    schedule in Redis; embedded, a timer of this process does, re-armed at start-up by
    ``restore_scheduled`` (a timer dies with its process). ``JOBS_INLINE`` (tests) arms nothing.
    """
    _check_declared(name)
    when_utc = _aware_utc(when_utc)
    job = Job(
        id=str(uuid.uuid4()),
        func=name,
        kwargs=kwargs,
        title=title,
        user_email=user_email,
        status="scheduled",
        heartbeat_at=when_utc,
        message=f"Scheduled for {when_utc:%Y-%m-%d %H:%M} UTC",
        store_id=scope_store_id,
    )
    db.session.add(job)
    db.session.commit()
    app = current_app._get_current_object()
    if app.config.get("JOBS_INLINE"):
        return job
    if app.config.get("REDIS_URL"):
        _rq_queue(app).enqueue_at(
            when_utc,
            "portal.jobs.run_job",
            job.id,
            extra_modules(),
            job_id=job.id,
            job_timeout=6 * 3600,
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
        )
    elif not app.extensions.get(CHILD):  # a child's timer would die with it: its parent arms it (``_take_over``)
        _arm(app, job.id, when_utc)
    return job


def restore_scheduled() -> int:
    """Embedded runner: arm a timer for every job still ``scheduled`` (timers die with their
    process); due ones run at once. Returns how many were armed; 0 with RQ or JOBS_INLINE, whose
    schedule does not live in a process."""
    app = current_app._get_current_object()
    if app.config.get("JOBS_INLINE") or app.config.get("REDIS_URL"):
        return 0
    rows = db.session.execute(select(Job.id, Job.heartbeat_at).where(Job.status == "scheduled")).all()
    db.session.rollback()
    armed = [job_id for job_id, due in rows if _arm(app, job_id, _aware_utc(due or _now()))]
    return len(armed)


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _timers(app: Flask) -> dict[str, threading.Timer]:
    """This process's armed timers by job id, kept on the app (not in a module global)."""
    return app.extensions.setdefault("loyalist_timers", {})


def _arm(app: Flask, job_id: str, when_utc: datetime) -> bool:
    """Start a daemon timer that hands the job to the job thread at ``when_utc``; False when armed already."""
    timers = _timers(app)
    if job_id in timers:
        return False
    delay = min(max((when_utc - _now()).total_seconds(), 0.0), threading.TIMEOUT_MAX)
    timer = threading.Timer(delay, _fire, args=(app, job_id))
    timer.daemon = True
    timer.name = f"jobs-timer-{job_id[:8]}"
    timers[job_id] = timer
    timer.start()
    return True


def _fire(app: Flask, job_id: str) -> None:
    """A timer went off: move the job scheduled → queued (once, even when several processes armed
    it) and give it to the job thread."""
    _timers(app).pop(job_id, None)
    try:
        with app.app_context():
            with db.engine.begin() as conn:
                moved = conn.execute(
                    update(Job).where(Job.id == job_id, Job.status == "scheduled").values(status="queued")
                ).rowcount
        if moved == 1:
            _executor(app).submit(_run_in_app, app, job_id)
    except Exception:  # a timer thread has no caller to tell: log, the row stays for restore_scheduled
        log.exception("scheduled job %s could not be started", job_id)


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
    """The job thread's task: wait for the database's job lock (the job stays queued meanwhile), then run."""
    try:
        with database_lock(app, "jobs") as lock, app.app_context():
            try:
                if app.config.get("JOBS_PROCESS"):
                    started = _now()
                    _run_in_child(app, job_id, lock.fileno())
                    _take_over(app, started)
                else:
                    run_job(job_id)
            finally:
                db.session.remove()
    except Exception:  # an executor keeps a task's exception to itself: log it
        log.exception("job %s could not be run", job_id)


def _run_in_child(app: Flask, job_id: str, lock_fd: int) -> None:
    """Run the job in a process of its own, forked from a warm server (``portal.job_host``) with this app's
    folders and database; a process that dies leaves the job failed, not 'running' until the heartbeat
    check notices.

    The process inherits the job lock (``lock_fd``): should this web process die, the lock is still
    held until the job's process ends, so no other job starts beside it. A process that exits cleanly has
    written its job's outcome, or found the job claimed by another process: its row is left alone.
    """
    from portal import job_host  # imports the whole app: not at this module's import

    env = dict(
        os.environ,
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        MODELS_DIR=app.config["MODELS_DIR"],
        UPLOAD_DIR=app.config["UPLOAD_DIR"],
        SECRET_KEY=app.config["SECRET_KEY"],
        JOBS_PROCESS="0",
        JOBS_NICE=str(app.config.get("JOBS_NICE") or 0),
        **{MODULES_ENV: ",".join(extra_modules())},
    )
    env.pop("REDIS_URL", None)
    code = job_host.run(env, job_id, lock_fd)
    if code == 0:
        return
    log.error("job %s: its process exited with %s (its output is in this server's error log)", job_id, code)
    message = "The job's process stopped unexpectedly (logged); nothing it was writing was kept. Start it again."
    with db.engine.begin() as conn:
        moved = conn.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(("queued", "running")))
            .values(status="failed", finished_at=_now(), message=message)
        ).rowcount
    if moved == 1:
        _audit_end(job_id, "failed", message)


def _take_over(app: Flask, since: datetime) -> None:
    """After a child process: give this process's job thread the jobs the child queued (they run after the
    current one), and arm timers for the jobs it scheduled (a webhook's retry); a failure is logged."""
    try:
        queued = db.session.scalars(
            select(Job.id).where(Job.status == "queued", Job.created_at >= since).order_by(Job.created_at)
        ).all()
        db.session.rollback()
        for queued_id in queued:
            _executor(app).submit(_run_in_app, app, queued_id)
        restore_scheduled()
    except Exception:
        log.exception("jobs queued by job process not handed over")


def _write(job_id: str, **values) -> None:
    """Update a job row in its own short transaction (never inside the job's own work)."""
    with db.engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(**values))


def _claim(job_id: str) -> bool:
    """scheduled/queued → running in one conditional UPDATE; True for the one caller that moved it."""
    with db.engine.begin() as conn:
        moved = conn.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(("scheduled", "queued")))
            .values(status="running", started_at=_now(), heartbeat_at=_now(), progress=0.0)
        ).rowcount
    return moved == 1


def run_job(job_id: str, modules: list[str] | None = None) -> None:
    """Run a recorded job to completion, keeping its state, progress and heartbeat current.

    A job that is not waiting to run (finished, failed, or already claimed by another process) is left alone.
    ``modules``: where the enqueuing process declared jobs beyond the portal's own (RQ passes them along).
    """
    import_modules(modules)
    job = db.session.get(Job, job_id)
    if job is None or job.status not in ("scheduled", "queued"):
        return
    name, kwargs = job.func, dict(job.kwargs or {})
    db.session.rollback()
    if not _claim(job_id):
        return
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
        result = _lookup(name)(progress=progress, **kwargs)
    except JobError as exc:
        db.session.rollback()
        _write(job_id, status="failed", message=str(exc), finished_at=_now())
        _audit_end(job_id, "failed", str(exc))
    except Exception:
        db.session.rollback()
        log.exception("job %s (%s) failed", job_id, name)
        message = "The job failed with an unexpected error (logged). Nothing it was writing was kept."
        _write(job_id, status="failed", finished_at=_now(), message=message)
        _audit_end(job_id, "failed", message)
    else:
        message = (result or {}).get("message") if isinstance(result, dict) else None
        _write(job_id, status="done", progress=1.0, finished_at=_now(), result=result or {}, message=message)
        _audit_end(job_id, "done", message)
    finally:
        stop.set()


def _audit_end(job_id: str, status: str, message: str | None) -> None:
    """The one audit line every job leaves when it ends (``job.done`` / ``job.failed``), for every runner.

    Written in its own short transaction after the job's row, by the user who started the job ("worker"
    for scheduled work). The runner imports no service, so the entry is inserted here directly; an
    audit failure is logged and never changes the job's outcome.
    """
    try:
        with db.engine.begin() as conn:
            row = conn.execute(
                select(Job.func, Job.title, Job.user_email, Job.started_at, Job.finished_at).where(Job.id == job_id)
            ).one_or_none()
            if row is None:
                return
            detail: dict = {"job": job_id, "title": row.title}
            if row.started_at is not None and row.finished_at is not None:
                detail["seconds"] = round((_aware_utc(row.finished_at) - _aware_utc(row.started_at)).total_seconds(), 1)
            if message:
                detail["message"] = message[:500]
            conn.execute(
                insert(AuditEntry).values(
                    at=_now(),
                    action=f"job.{status}",
                    target=row.func,
                    detail=detail,
                    user_email=row.user_email or "worker",
                )
            )
    except Exception:  # the job's own state is written already: an audit hiccup must not fail it
        log.exception("audit line for job %s (%s) not written", job_id, status)


def _heartbeat(app: Flask, job_id: str, stop: threading.Event) -> None:
    with app.app_context():
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                _write(job_id, heartbeat_at=_now())
            except Exception:  # a busy database: the next beat tries again
                log.debug("heartbeat for %s skipped", job_id)


def get(job_id: str) -> Job | None:
    """A job's state; a running job whose heartbeat stopped is marked failed (never 'running forever').

    A queued job counts from its creation, a scheduled one from the time it was due.
    """
    job = db.session.get(Job, job_id)
    if job is None:
        return None
    if job.status in ("running", "queued", "scheduled"):
        last = job.heartbeat_at or job.created_at
        if last.tzinfo is None:
            last = last.replace(tzinfo=timezone.utc)
        limit = STALE_AFTER if job.status == "running" else timedelta(hours=6)
        if _now() - last > limit:
            message = (
                "No worker started this scheduled job within 6 hours of its time; nothing was done. Start it again."
                if job.status == "scheduled"
                else "The worker running this job stopped; nothing it was writing was kept. Start it again."
            )
            with db.engine.begin() as conn:
                moved = conn.execute(
                    update(Job)
                    .where(Job.id == job.id, Job.status == job.status)
                    .values(status="failed", finished_at=_now(), message=message)
                ).rowcount
            if moved == 1:  # the one caller that marked it failed writes its audit line
                _audit_end(job.id, "failed", message)
            db.session.expire(job)
            job = db.session.get(Job, job_id)
    return job


def visible_to(job: Job, user) -> bool:
    """Whether ``user`` may see ``job``: admins always, its starter always; a store's job also every user of
    that store and store-less users other than managers (``scope_to_user``'s rule); a chain-wide job nobody else."""
    if user.role == "admin" or (job.user_email is not None and job.user_email == user.email):
        return True
    if job.store_id is None:
        return False
    store_id = user_store_id(user)
    return store_id == job.store_id or (store_id is None and user.role != "manager")


def get_for(job_id: str, user) -> Job | None:
    """``get`` for a page: None when the job is absent or not ``user``'s to see (answered with a 404 alike)."""
    job = get(job_id)
    return job if job is not None and visible_to(job, user) else None


def as_dict(job: Job) -> dict:
    """The JSON a progress bar polls."""
    return {
        "id": job.id,
        "title": job.title,
        "status": job.status,
        "progress": job.progress,
        "message": job.message,
        "result": job.result,
    }
