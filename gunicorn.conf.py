"""gunicorn settings.

Embedded defaults (no REDIS_URL): one worker process per CPU, at most 4, of 4 threads each. Each
process has its own job thread, but a lock file per database lets one job run at a time across
them (portal.job_processes.database_lock), so several processes are safe on SQLite; past 4 they add memory
(each loads the app and its models), not speed, as SQLite writes one at a time. With REDIS_URL:
2 × CPU + 1 processes of 8 threads (jobs run on `flask worker`). WEB_CONCURRENCY and WEB_THREADS
override both.

No keep-alive by default (WEB_KEEPALIVE seconds turns it on): a kept-alive connection stays with the
process that accepted it, and in the load test (bench.load, 50 users) one process ran at 100 % of a
core while the other idled. With a connection per request the kernel spreads requests over the
processes: p50 200 -> 98 ms, p95 1.3 -> 0.87 s, 35 -> 41 req/s. Put keep-alive on the proxy's client
side, not between the proxy and gunicorn.
"""

import multiprocessing
import os

bind = os.environ.get("BIND", "127.0.0.1:5000")
_cpus = multiprocessing.cpu_count()
_scaled = bool(os.environ.get("REDIS_URL"))
workers = int(os.environ.get("WEB_CONCURRENCY", (_cpus * 2 + 1) if _scaled else min(_cpus, 4)))
threads = int(os.environ.get("WEB_THREADS", 8 if _scaled else 4))
keepalive = int(os.environ.get("WEB_KEEPALIVE", 0))
timeout = 120
graceful_timeout = 30
accesslog = "-"
errorlog = "-"
# Masks phone numbers, e-mails and secrets in the request line, query string and referrer.
logger_class = "portal.access_log.MaskingAccessLogger"


def post_worker_init(worker):
    """Embedded job runner only (no REDIS_URL): start the warm server job processes fork from
    (portal/job_host.py), and catch up on campaigns left waiting.

    Runs in each worker process right after it loaded the app: that process owns a job thread
    and its timers, and a timer armed by a previous process died with it. So queue campaigns
    that became due while the server was down, re-arm scheduled jobs, and schedule the resume
    of campaigns still waiting for later (portal.services.campaigns.resuming.resume_on_start). The workers
    take turns (a start-up lock file): each sees what the previous one queued or scheduled, so
    none schedules a resume twice; every worker arms the timers, and a due job moves to queued in
    one conditional UPDATE, so whichever fires first runs it, once. With RQ the schedule lives in
    Redis and ``flask worker`` runs it: nothing to do here. A failure is logged, never fatal: the
    site still starts and `flask campaign resume` still works.
    """
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "app_context"):
        from portal.services.mail import clock

        clock.start(app)  # queues the hourly mail jobs (one process claims each hour; docs/mail.md)
    if app is None or not hasattr(app, "app_context") or app.config.get("REDIS_URL"):
        return
    if app.config.get("JOBS_PROCESS"):  # the server jobs are forked from: started now, not by the first job
        import threading

        from portal import job_host

        threading.Thread(target=job_host.start, name="job-host-start", daemon=True).start()
    try:
        from portal import job_processes
        from portal.services.campaigns import resuming

        with job_processes.database_lock(app, "start"), app.app_context():
            summary = resuming.resume_on_start()
    except Exception:
        worker.log.exception("resuming waiting campaigns at start-up failed; run `flask campaign resume`")
        return
    if any(summary.values()):
        worker.log.info(
            "campaigns at start-up: resumed %s, scheduled %s; %s scheduled jobs re-armed",
            summary["resumed"],
            summary["scheduled"],
            summary["rearmed"],
        )
