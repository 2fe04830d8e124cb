"""``flask worker``: an RQ worker for imports, training and SMS (needs REDIS_URL), at JOBS_NICE lower priority.

It also runs RQ's scheduler (one per Redis, elected by a lock among the workers), which moves
jobs recorded with ``jobs.schedule_at`` (e.g. a campaign resuming after quiet hours) to the
queue when they are due.
"""

import os

import click
from flask import current_app
from flask.cli import with_appcontext

from portal.job_processes import lower_priority
from portal.jobs import QUEUE_NAME


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
@with_appcontext
def worker_command(burst: bool):
    """Run a background worker and RQ's scheduler on REDIS_URL (jobs run inside this app's context)."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        click.echo("REDIS_URL is not set: without it jobs run inside the web process; no worker is needed.", err=True)
        raise SystemExit(1)
    from redis import Redis
    from rq import Queue, Worker

    lower_priority(current_app)  # RQ's work horses are forked from here: they inherit it
    connection = Redis.from_url(url)
    worker = Worker([Queue(QUEUE_NAME, connection=connection)], connection=connection)
    click.echo(f"worker {worker.name} listening on queue {QUEUE_NAME}")
    worker.work(burst=burst, with_scheduler=True)


@click.group("jobs")
def jobs_group():
    """Background jobs."""


@jobs_group.command("run")
@click.argument("job_id")
@with_appcontext
def run_command(job_id: str):
    """Run one recorded job here and now, at JOBS_NICE lower priority (the embedded runner's child process)."""
    from portal import jobs

    lower_priority(current_app)
    jobs.import_modules(os.environ.get(jobs.MODULES_ENV))  # the jobs its parent declared beyond the app's
    current_app.extensions[jobs.CHILD] = True  # jobs this one queues are run by the parent (jobs.enqueue)
    jobs.run_job(job_id)


commands = [worker_command, jobs_group]
