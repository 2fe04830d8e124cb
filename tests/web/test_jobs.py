"""The job runner in both modes: an in-process thread, and RQ on Redis (when REDIS_URL is set)."""

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from portal import job_processes, jobs
from portal.models import Job


@pytest.fixture(autouse=True)
def threaded(app):
    """These tests choose the runner themselves: the thread unless a test sets REDIS_URL."""
    saved = app.config["JOBS_INLINE"], app.config["REDIS_URL"]
    app.config["JOBS_INLINE"], app.config["REDIS_URL"] = False, None
    yield
    app.config["JOBS_INLINE"], app.config["REDIS_URL"] = saved


@jobs.job("tests.web.test_jobs.sample_job")
def sample_job(progress, n, fail=False):
    """A job used by these tests: reports progress, then returns or fails."""
    for i in range(n):
        progress((i + 1) / n, f"step {i + 1} of {n}")
    if fail:
        raise jobs.JobError("the file had no rows")
    return {"message": f"did {n} steps", "n": n}


@jobs.job("tests.web.test_jobs.crashing_job")
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


@jobs.job("tests.web.test_jobs.pid_job")
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


@jobs.job("tests.web.test_jobs.lock_job")
def lock_job(progress):
    """Reports which files this process holds open (the job lock must be one: it travels with the job)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            held.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return {"message": "ran", "pid": os.getpid(), "open": held, "parent": os.getppid()}


def test_a_job_process_is_forked_from_the_warm_server_and_holds_the_job_lock(app):
    """Forked from ``portal.job_host``'s server (not the web process, not a fresh interpreter), with the job
    lock's descriptor: the lock stays held while the job runs even if the web process dies."""
    app.config["JOBS_PROCESS"] = True
    try:
        first = _wait(app, jobs.enqueue("tests.web.test_jobs.lock_job", "Lock").id, timeout=120)
        second = _wait(app, jobs.enqueue("tests.web.test_jobs.lock_job", "Lock").id, timeout=120)
    finally:
        app.config["JOBS_PROCESS"] = False
    lock = str(job_processes._lock_path(app, "jobs"))
    for done in (first, second):
        assert done.status == "done" and lock in done.result["open"]
        assert done.result["pid"] != os.getpid() and done.result["parent"] != os.getpid()
    assert first.result["pid"] != second.result["pid"]  # a fresh process per job
    assert first.result["parent"] == second.result["parent"]  # forked by the same server


@jobs.job("tests.web.test_jobs.queueing_job")
def queueing_job(progress):
    """Queues another job from inside a job (as a rescore queues its webhook deliveries)."""
    queued = jobs.enqueue("tests.web.test_jobs.pid_job", "Pid, queued by a job")
    return {"message": "queued one", "queued": queued.id, "pid": os.getpid()}


def test_a_job_queued_by_a_job_process_runs_after_it(app):
    """The child holds the job lock: were its job handed to its own job thread, the child would never exit."""
    app.config["JOBS_PROCESS"] = True
    try:
        first = _wait(app, jobs.enqueue("tests.web.test_jobs.queueing_job", "Queue one").id, timeout=120)
        assert first.status == "done" and first.result["pid"] != os.getpid()
        second = _wait(app, first.result["queued"], timeout=120)
    finally:
        app.config["JOBS_PROCESS"] = False
    assert second.status == "done" and second.result["pid"] not in (os.getpid(), first.result["pid"])


@jobs.job("tests.web.test_jobs.nice_job")
def nice_job(progress):
    """Reports the CPU priority (niceness) of the process it ran in."""
    return {"message": "ran", "pid": os.getpid(), "nice": os.getpriority(os.PRIO_PROCESS, 0)}


@pytest.mark.parametrize("step", [7, 0])
def test_job_process_runs_at_lower_priority_and_the_web_process_keeps_its_own(app, step):
    base = os.getpriority(os.PRIO_PROCESS, 0)
    app.config["JOBS_PROCESS"], app.config["JOBS_NICE"] = True, step
    try:
        done = _wait(app, jobs.enqueue("tests.web.test_jobs.nice_job", "Nice").id, timeout=120)
    finally:
        app.config["JOBS_PROCESS"], app.config["JOBS_NICE"] = False, 0
    assert done.status == "done" and done.result["pid"] != os.getpid()
    assert done.result["nice"] == min(base + step, 19)
    assert os.getpriority(os.PRIO_PROCESS, 0) == base


def test_a_job_waits_queued_while_another_process_holds_the_job_lock(app):
    with job_processes.database_lock(app, "jobs"):  # as a job running in another web process would
        job = jobs.enqueue("tests.web.test_jobs.sample_job", "Sample", n=1)
        time.sleep(0.5)
        from portal.extensions import db

        db.session.expire_all()
        assert jobs.get(job.id).status == "queued"
    assert _wait(app, job.id).status == "done"


def test_a_job_claimed_by_another_process_is_not_run_again(app, db):
    db.session.add(
        Job(
            id="taken-1",
            func="tests.web.test_jobs.sample_job",
            kwargs={"n": 2},
            title="Sample",
            status="running",
            heartbeat_at=datetime.now(timezone.utc),
        )
    )
    db.session.commit()
    jobs.run_job("taken-1")
    db.session.expire_all()
    job = db.session.get(Job, "taken-1")
    assert job.status == "running" and job.result is None and job.progress == 0.0


def test_dead_job_is_shown_failed_not_running_forever(app, db):
    job = Job(
        id="dead-1",
        func="x.y",
        title="Import",
        status="running",
        heartbeat_at=datetime.now(timezone.utc) - timedelta(minutes=30),
    )
    db.session.add(job)
    db.session.commit()
    assert jobs.get("dead-1").status == "failed"
    assert "stopped" in jobs.get("dead-1").message


def test_status_endpoint(client, login_as, app):
    user = login_as("marketer")
    job = jobs.enqueue("tests.web.test_jobs.sample_job", "Sample", user.email, n=2)  # chain-wide: its starter sees it
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


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="REDIS_URL not set: RQ path runs in CI's second pass")
def test_flask_worker_runs_jobs_at_lower_priority(app):
    app.config["REDIS_URL"] = os.environ["REDIS_URL"]
    try:
        job = jobs.enqueue("tests.web.test_jobs.nice_job", "Nice")
    finally:
        app.config["REDIS_URL"] = None
    env = dict(
        os.environ,
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        SECRET_KEY=app.config["SECRET_KEY"],
        MODELS_DIR=app.config["MODELS_DIR"],
        UPLOAD_DIR=app.config["UPLOAD_DIR"],
        JOBS_NICE="5",
    )
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app:create_app", "worker", "--burst"],
        cwd=app.root_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    done = _wait(app, job.id)
    assert done.status == "done" and done.result["pid"] != os.getpid()
    assert done.result["nice"] == min(os.getpriority(os.PRIO_PROCESS, 0) + 5, 19)


_BATCH = """
import os, sys
from app import create_app
from portal.config import TestConfig
from portal.extensions import db

config = TestConfig(database_url=sys.argv[1])
config.JOBS_NICE = 3
app = create_app(config)
with app.app_context():
    db.create_all()
base = os.getpriority(os.PRIO_PROCESS, 0)
result = app.test_cli_runner().invoke(args=sys.argv[2:])
with app.app_context(), db.engine.connect() as conn:
    parallel = conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar() \
        if conn.dialect.name == "postgresql" else "n/a"
print("raised by", os.getpriority(os.PRIO_PROCESS, 0) - base, "parallel", parallel, "exit", result.exit_code)
"""


@pytest.mark.parametrize("command", [["train", "segmentation"], ["import", "transactions", "FILE"]])
def test_batch_commands_run_at_lower_priority(app, db, tmp_path, command):
    """``flask train`` and ``flask import`` yield the CPU to the web pages like jobs do (JOBS_NICE); on
    PostgreSQL their sessions also give up parallel query, which the web's sessions keep."""
    data = tmp_path / "lines.csv"
    data.write_text(
        "customer_id,transaction_id,purchase_date,product_id,quantity,total_amount\nC1,T1,2026-01-02,P1,1,2.50\n"
    )
    args = [str(data) if a == "FILE" else a for a in command]
    pg = db.engine.dialect.name == "postgresql"
    url = db.engine.url.render_as_string(hide_password=False) if pg else f"sqlite:///{tmp_path / 'batch.db'}"
    out = subprocess.run(
        [sys.executable, "-c", _BATCH, url, *args], cwd=app.root_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1].startswith("raised by 3 parallel " + ("0 " if pg else "n/a "))
    if pg:  # the web (this process) keeps the server's default
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar() != "0"
