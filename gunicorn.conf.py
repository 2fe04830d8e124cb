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
