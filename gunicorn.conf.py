"""gunicorn settings. On the embedded defaults (SQLite, no REDIS_URL) one worker process with
threads, so the in-process job runner is single; with REDIS_URL, workers from the CPU count."""
import multiprocessing
import os

bind = os.environ.get("BIND", "127.0.0.1:5000")
_scaled = bool(os.environ.get("REDIS_URL"))
workers = int(os.environ.get("WEB_CONCURRENCY", (multiprocessing.cpu_count() * 2 + 1) if _scaled else 1))
threads = int(os.environ.get("WEB_THREADS", 8))
timeout = 120
graceful_timeout = 30
accesslog = "-"
errorlog = "-"


def post_worker_init(worker):
    """Embedded job runner only (no REDIS_URL): catch up on campaigns left waiting.

    Runs in the worker process right after it loaded the app: that process owns the job thread
    and its timers, and a timer armed by a previous process died with it. So queue campaigns
    that became due while the server was down, re-arm scheduled jobs, and schedule the resume
    of campaigns still waiting for later (portal.services.sending.resume_on_start). With RQ the
    schedule lives in Redis and ``flask worker`` runs it: nothing to do here. A failure is
    logged, never fatal: the site still starts and `flask campaign resume` still works.
    """
    app = getattr(worker, "wsgi", None)
    if app is None or not hasattr(app, "app_context") or app.config.get("REDIS_URL"):
        return
    try:
        from portal.services import sending

        with app.app_context():
            summary = sending.resume_on_start()
    except Exception:
        worker.log.exception("resuming waiting campaigns at start-up failed; run `flask campaign resume`")
        return
    if any(summary.values()):
        worker.log.info("campaigns at start-up: resumed %s, scheduled %s; %s scheduled jobs re-armed",
                        summary["resumed"], summary["scheduled"], summary["rearmed"])
