"""The job runner in both modes: an in-process thread, and RQ on Redis (when REDIS_URL is set)."""
import os
import time
from datetime import datetime, timedelta, timezone

import pytest

from portal import jobs
from portal.models import Job


@pytest.fixture(autouse=True)
def threaded(app):
    """These tests choose the runner themselves: the thread unless a test sets REDIS_URL."""
    saved = app.config["JOBS_INLINE"], app.config["REDIS_URL"]
    app.config["JOBS_INLINE"], app.config["REDIS_URL"] = False, None
    yield
    app.config["JOBS_INLINE"], app.config["REDIS_URL"] = saved


def sample_job(progress, n, fail=False):
    """A job used by these tests: reports progress, then returns or fails."""
    for i in range(n):
        progress((i + 1) / n, f"step {i + 1} of {n}")
    if fail:
        raise jobs.JobError("the file had no rows")
    return {"message": f"did {n} steps", "n": n}


def crashing_job(progress):
    raise RuntimeError("secret internals")


def _wait(app, job_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        from portal.extensions import db

        db.session.expire_all()
        job = jobs.get(job_id)
        if job.status in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError("job did not finish")


def test_thread_runner_runs_job_and_records_progress(app):
    job = jobs.enqueue("tests.web.test_jobs.sample_job", "Sample", n=3)
    done = _wait(app, job.id)
    assert done.status == "done" and done.progress == 1.0
    assert done.result == {"message": "did 3 steps", "n": 3} and done.message == "did 3 steps"


def test_job_error_message_is_shown_and_internal_errors_are_not(app):
    failed = _wait(app, jobs.enqueue("tests.web.test_jobs.sample_job", "Sample", n=1, fail=True).id)
    assert failed.status == "failed" and failed.message == "the file had no rows"
    crashed = _wait(app, jobs.enqueue("tests.web.test_jobs.crashing_job", "Crash").id)
    assert crashed.status == "failed" and "secret internals" not in crashed.message


def pid_job(progress, die=False):
    """Reports the process it ran in; ``die`` ends that process without a word (a crash, an OOM kill)."""
    progress(0.5, "half way")
    if die:
        os._exit(3)
    return {"message": "ran", "pid": os.getpid()}


def test_process_runner_runs_the_job_in_a_child_process(app):
    app.config["JOBS_PROCESS"] = True
    try:
        done = _wait(app, jobs.enqueue("tests.web.test_jobs.pid_job", "Pid").id, timeout=120)
        assert done.status == "done" and done.result["pid"] != os.getpid()
        died = _wait(app, jobs.enqueue("tests.web.test_jobs.pid_job", "Pid", die=True).id, timeout=120)
        assert died.status == "failed" and "process stopped unexpectedly" in died.message
    finally:
        app.config["JOBS_PROCESS"] = False


def test_dead_job_is_shown_failed_not_running_forever(app, db):
    job = Job(id="dead-1", func="x.y", title="Import", status="running",
              heartbeat_at=datetime.now(timezone.utc) - timedelta(minutes=30))
    db.session.add(job)
    db.session.commit()
    assert jobs.get("dead-1").status == "failed"
    assert "stopped" in jobs.get("dead-1").message


def test_status_endpoint(client, login_as, app):
    login_as("marketer")
    job = jobs.enqueue("tests.web.test_jobs.sample_job", "Sample", n=2)
    _wait(app, job.id)
    data = client.get(f"/jobs/{job.id}").get_json()
    assert data["status"] == "done" and data["title"] == "Sample"
    assert client.get("/jobs/nope").status_code == 404


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="REDIS_URL not set: RQ path runs in CI's second pass")
def test_rq_runner(app):
    from redis import Redis
    from rq import Queue, SimpleWorker

    app.config["REDIS_URL"] = os.environ["REDIS_URL"]
    try:
        job = jobs.enqueue("tests.web.test_jobs.sample_job", "Sample", n=4)
        connection = Redis.from_url(os.environ["REDIS_URL"])
        assert Job.query.get(job.id).status == "queued"
        SimpleWorker([Queue(jobs.QUEUE_NAME, connection=connection)], connection=connection).work(burst=True)
        done = _wait(app, job.id)
        assert done.status == "done" and done.result["n"] == 4
    finally:
        app.config["REDIS_URL"] = None
