"""The embedded runner's job processes, forked from a warm server instead of started from scratch.

Why: each job of the embedded runner (JOBS_PROCESS) runs in a process of its own, so its CPU-bound Python
never holds the web process's GIL. Started as ``flask jobs run ID`` that process spent about 2 s importing
the portal, pandas and scikit-learn before doing anything: more than a small job's own work (a summary
refresh, a webhook delivery, the rescore of one API batch's customers).

How: multiprocessing's ``forkserver`` start method. One server process per web process (started by gunicorn's
worker at start-up, ``start``, or else by the first job) imports this module, and with it the whole app
(every module that declares a job, the model libraries), once; each job is then a fork of that server,
which has all of it already, and builds its app from the
environment the web process hands it (``create_app``, about 0.2 s). Each job still gets a fresh process
(its memory is returned when it ends; a crash ends only it); the server holds no database connection or
app, only imported modules. The job lock's file descriptor travels with the job (``_InheritedFd``), so
the job process holds the lock as long as it lives, as the ``flask jobs run`` child did.
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing import reduction

import app as app_module

app_module.register_jobs()  # in the server: every module that declares a job, imported once


def _context() -> multiprocessing.context.BaseContext:
    """multiprocessing's forkserver context (one per process), its server to import this module first."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # read when the server starts; later calls change nothing
    return context


def start() -> None:
    """Start the warm server now, so the first job does not wait for it (about 1.5 s: it imports the app);
    gunicorn's workers call this at start-up, in a thread. Called again, it only forks one more empty process."""
    process = _context().Process(target=_ready, name="loyalist-job-host-ready")
    process.start()  # the server imports this module before it forks anything: this waits for that
    process.join()


def _ready() -> None:
    """A process that does nothing: forking it shows the server is up and has imported the app."""


class _InheritedFd:
    """A file descriptor handed to the forked job process (``DupFd``: sent to the server with the job)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self):
        return _detach, (reduction.DupFd(self.fd),)


def _detach(duplicate) -> int:
    return duplicate.detach()


def run(env: dict[str, str], job_id: str, lock_fd: int) -> int:
    """Run job ``job_id`` in a process forked from the warm server, with exactly the environment ``env``
    and the job lock ``lock_fd``; wait for it and return its exit code (0: it ran and recorded its outcome,
    or found the job claimed elsewhere; anything else: it died)."""
    process = _context().Process(
        target=_job_process, args=(env, job_id, _InheritedFd(lock_fd)), name=f"loyalist-job-{job_id[:8]}"
    )
    process.start()
    process.join()
    return process.exitcode if process.exitcode is not None else -1


def _job_process(env: dict[str, str], job_id: str, lock_fd: int) -> None:
    """In the forked process: the web process's environment, an app built from it, the job (as ``flask jobs
    run``: lower priority, the parent's extra job modules, jobs it queues left to the parent)."""
    from portal import jobs
    from portal.job_processes import lower_priority

    os.environ.clear()
    os.environ.update(env)
    app = app_module.create_app()
    with app.app_context():
        lower_priority(app)
        jobs.import_modules(env.get(jobs.MODULES_ENV))
        app.extensions[jobs.CHILD] = True
        jobs.run_job(job_id)
    os.close(lock_fd)  # the job is recorded: the lock goes with this process either way
