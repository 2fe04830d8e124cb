"""Several web processes on one database (gunicorn workers on SQLite): one job at a time, each job once.

Each test starts real OS processes running the app against the suite's database; a test job
appends 'start' and 'end' lines to a shared file, so overlapping or repeated runs show there.
"""

import os
import runpy
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import select

from app import create_app
from portal import jobs
from portal.models import Campaign, Job
from portal.services.campaigns import campaigns, resuming

REPO = Path(__file__).resolve().parents[2]
JOB = "tests.web.test_jobs_processes.logged_job"


@jobs.job(JOB)
def logged_job(progress, log: str, token: str):
    """Appends 'start TOKEN' and 'end TOKEN' (one write each, O_APPEND) around a short sleep."""
    _append(log, f"start {token} {os.getpid()}")
    progress(0.5, "sleeping")
    time.sleep(0.3)
    _append(log, f"end {token} {os.getpid()}")
    return {"message": token}


def _append(path: str, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(line + "\n")


def drive(database_url: str, models_dir: str, upload_dir: str, go: str, action: str, arg: str, log: str) -> None:
    """One web process: wait for the ``go`` file, then ``enqueue`` ARG jobs through the embedded runner
    (child processes, as in production) and wait for them, ``run`` the job with id ARG, or ``start``
    as a gunicorn worker does (its post_worker_init)."""
    from portal.config import TestConfig  # here, so pytest does not take it for a test class

    config = TestConfig(database_url=database_url, models_dir=models_dir)
    config.UPLOAD_DIR, config.JOBS_INLINE, config.JOBS_PROCESS, config.REDIS_URL = upload_dir, False, True, None
    app = create_app(config)
    post_worker_init = runpy.run_path(str(REPO / "gunicorn.conf.py"))["post_worker_init"]
    with app.app_context():
        Path(f"{go}.ready.{os.getpid()}").touch()
        while not os.path.exists(go):
            time.sleep(0.005)
        if action == "run":
            jobs.run_job(arg)
        elif action == "start":
            post_worker_init(SimpleNamespace(wsgi=app, log=SimpleNamespace(info=print, exception=_fail)))
        else:
            for i in range(int(arg)):
                jobs.enqueue(JOB, "Logged", log=log, token=f"{os.getpid()}-{i}")
    if action == "enqueue":
        app.extensions["loyalist_jobs"].shutdown(wait=True)


def _fail(message, *args):
    raise SystemExit(f"post_worker_init failed: {message % args}")


def _start_processes(app, tmp_path, action: str, args: list[str]) -> list[tuple[str, str]]:
    """Run ``drive`` in one process per arg, released together; returns the log's lines as (event, token)."""
    go, log = tmp_path / "go", tmp_path / "log"
    code = "import sys; from tests.web.test_jobs_processes import drive; drive(*sys.argv[1:])"
    common = [app.config["SQLALCHEMY_DATABASE_URI"], app.config["MODELS_DIR"], app.config["UPLOAD_DIR"], str(go)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, *common, action, arg, str(log)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for arg in args
    ]
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob("go.ready.*"))) < len(args) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()  # all loaded: release them together
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-2000:]
    return [tuple(line.split()[:2]) for line in log.read_text().splitlines()] if log.exists() else []


def test_jobs_of_two_web_processes_never_overlap_and_each_runs_once(app, db, tmp_path):
    events = _start_processes(app, tmp_path, "enqueue", ["2", "2"])
    starts = [token for event, token in events if event == "start"]
    assert len(starts) == 4 and len(set(starts)) == 4
    assert len({token.split("-")[0] for token in starts}) == 2  # both processes ran their jobs
    # One job at a time: every start is followed by the end of the same job before the next start.
    assert events == [(event, token) for token in starts for event in ("start", "end")]
    db.session.expire_all()
    statuses = db.session.scalars(select(Job.status).where(Job.func == JOB)).all()
    assert statuses == ["done"] * 4


def test_two_processes_racing_for_the_same_queued_job_run_it_once(app, db, tmp_path):
    db.session.add(
        Job(
            id="race-1",
            func=JOB,
            title="Logged",
            status="queued",
            kwargs={"log": str(tmp_path / "log"), "token": "race"},
        )
    )
    db.session.commit()
    events = _start_processes(app, tmp_path, "run", ["race-1", "race-1"])
    assert events == [("start", "race"), ("end", "race")]
    db.session.expire_all()
    assert db.session.get(Job, "race-1").status == "done"


def test_workers_starting_together_schedule_a_waiting_campaigns_resume_once(
    app, db, tmp_path, make_store, make_customer
):
    store = make_store("Corner Shop", timezone="America/New_York")
    make_customer(store, sms_consent="opted_in")
    later = campaigns.create_campaign("Later", {}, "Hi {code}", control_share=0)
    later.status, later.scheduled_for = "waiting", datetime.now(timezone.utc) + timedelta(days=2)
    db.session.commit()
    _start_processes(app, tmp_path, "start", ["-", "-", "-"])
    db.session.expire_all()
    resumes = db.session.scalars(select(Job).where(Job.func == resuming.RESUME_JOB)).all()
    assert [(job.kwargs["campaign_id"], job.status) for job in resumes] == [(later.id, "scheduled")]
    assert db.session.get(Campaign, later.id).status == "waiting"
