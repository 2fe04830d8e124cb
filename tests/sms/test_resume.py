"""A campaign stopped by quiet hours resumes by itself when its window opens, once.

The send runs see a frozen clock (``now`` in the send options), as the quiet-hours tests in
test_sending.py do. The store-time dates are taken a few days ahead of today so that the real
timers armed by the in-process runner stay far away while a test runs: the tests fire the
timer's callable themselves instead of sleeping until 08:00. RQ variant: REDIS_URL set.
"""

from __future__ import annotations

import os
import runpy
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from datetime import time as clock_time
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN
from sqlalchemy import select

from portal import jobs
from portal.models import Campaign, Job, OutboxMessage
from portal.services.campaigns import campaigns, resuming, sending

ROOT = Path(__file__).resolve().parents[2]
NEW_YORK = ZoneInfo("America/New_York")
FAST = {
    "rate_per_second": 1000,
    "lease_seconds": 30,
    "lookup_delay_seconds": 0,
    "backoff_base_seconds": 0.01,
    "backoff_max_seconds": 0.05,
    "max_wait_seconds": 5,
}


def _night():
    """(22:00, next 08:00) store time in New York, three days from today, as UTC datetimes."""
    day = datetime.now(NEW_YORK).date() + timedelta(days=3)
    evening = datetime.combine(day, clock_time(22, 0), tzinfo=NEW_YORK).astimezone(timezone.utc)
    morning = datetime.combine(day + timedelta(days=1), clock_time(8, 0), tzinfo=NEW_YORK).astimezone(timezone.utc)
    return evening, morning


@pytest.fixture()
def clock(app, monkeypatch, fake_twilio):
    """A frozen clock for every send run (also the ones the job runner starts), the fake Twilio
    as the configured gateway, the quiet hours 21:00-08:00 and short waits."""
    evening, morning = _night()
    state = SimpleNamespace(now=evening, evening=evening, morning=morning)
    real = sending.options_from_settings
    monkeypatch.setattr(
        sending, "options_from_settings", lambda overrides=None: replace(real(overrides), now=lambda: state.now)
    )
    monkeypatch.setitem(app.config, "SMS_SEND_OPTIONS", {**FAST, "quiet_start": "21:00", "quiet_end": "08:00"})
    for key, value in {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM": "+15005550006",
        "TWILIO_API_BASE": fake_twilio.base_url,
    }.items():
        monkeypatch.setitem(app.config, key, value)
    return state


@pytest.fixture()
def thread_mode(app, monkeypatch):
    """The in-process runner (job thread and timers); timers left armed are cancelled after."""
    monkeypatch.setitem(app.config, "JOBS_INLINE", False)
    monkeypatch.setitem(app.config, "REDIS_URL", None)
    yield
    for timer in app.extensions.pop("loyalist_timers", {}).values():
        timer.cancel()


@pytest.fixture()
def night_campaign(clock, make_store, make_customer):
    """A campaign of four opted-in New York customers, created at 22:00 store time."""
    store = make_store("Corner Shop", timezone="America/New_York")
    for i in range(4):
        make_customer(
            store,
            phone=f"+1202555{2000 + i:04d}",
            sms_consent="opted_in",
            sms_consent_at=clock.evening - timedelta(days=30),
        )
    return campaigns.create_campaign("Night", {}, "Hi {first_name}, code {code}", control_share=0, now=clock.evening)


def _wait_until(predicate, what, timeout=60):
    from portal.extensions import db

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _finished(job_id):
    return _wait_until(
        lambda: (j := jobs.get(job_id)) is not None and j.status in ("done", "failed") and j, f"job {job_id}"
    )


def _jobs(db, func):
    db.session.expire_all()
    return db.session.scalars(select(Job).where(Job.func == func).order_by(Job.created_at)).all()


def _status(db, campaign_id):
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id).status


def _end_waiting(db, app, campaign_id):
    """Run the send as the Send button does; at 22:00 it ends 'waiting'. Returns the resume Job."""
    first = _finished(resuming.start_send(campaign_id, user_email="test").id)
    assert first.status == "done" and "resumes by itself" in first.message, first.message
    [resume] = [j for j in _jobs(db, resuming.RESUME_JOB) if j.kwargs["campaign_id"] == campaign_id]
    return resume


def _fire(app, job_id):
    """What the timer does when 08:00 comes, without waiting for it."""
    timer = app.extensions["loyalist_timers"][job_id]
    timer.cancel()
    timer.function(*timer.args, **timer.kwargs)


def test_waiting_campaign_resumes_at_the_window_and_sends_each_message_once(
    app, db, thread_mode, clock, night_campaign, fake_twilio
):
    resume = _end_waiting(db, app, night_campaign.id)
    assert fake_twilio.messages == []
    campaign = db.session.get(Campaign, night_campaign.id)
    assert campaign.status == "waiting"
    assert campaign.scheduled_for.replace(tzinfo=timezone.utc) == clock.morning
    # Scheduled for 08:00 store time, on a timer of this process.
    assert resume.status == "scheduled" and resume.heartbeat_at.replace(tzinfo=timezone.utc) == clock.morning
    assert resume.kwargs == {"campaign_id": night_campaign.id, "due": clock.morning.isoformat()}
    assert resume.id in app.extensions["loyalist_timers"]

    clock.now = clock.morning + timedelta(minutes=1)
    _fire(app, resume.id)
    done = _finished(resume.id)
    assert done.status == "done" and done.result["resumed"] is True
    sent = _finished(done.result["send_job"])
    assert sent.status == "done", sent.message
    assert _status(db, night_campaign.id) == "done"

    rows = db.session.scalars(select(OutboxMessage).where(OutboxMessage.campaign_id == night_campaign.id)).all()
    per_phone = Counter(m["to"] for m in fake_twilio.messages)
    assert len(rows) == 4 and {r.phone: per_phone[r.phone] for r in rows} == {r.phone: 1 for r in rows}
    assert {r.message_sid for r in rows} == {m["sid"] for m in fake_twilio.messages}

    # The same timer going off again (another process armed it too) runs nothing more.
    jobs._fire(app, resume.id)
    assert resuming.resume_campaign_job(None, night_campaign.id, clock.morning.isoformat())["resumed"] is False
    assert len(_jobs(db, resuming.SEND_JOB)) == 2 and len(fake_twilio.requests) == 4


def test_a_cancelled_campaign_is_not_resumed(app, db, thread_mode, clock, night_campaign, fake_twilio):
    resume = _end_waiting(db, app, night_campaign.id)
    campaigns.cancel_campaign(night_campaign.id, user_email="test")
    clock.now = clock.morning
    _fire(app, resume.id)
    done = _finished(resume.id)
    assert done.status == "done" and done.result["resumed"] is False and "cancelled" in done.message
    assert _status(db, night_campaign.id) == "cancelled"
    assert len(_jobs(db, resuming.SEND_JOB)) == 1 and fake_twilio.requests == []


def test_concurrent_resumes_queue_one_job(app, db, clock, night_campaign, monkeypatch):
    """Two timers and cron's `flask campaign resume` at the same moment: one send job."""
    campaign_id = night_campaign.id  # a plain int: the racers must not touch this thread's session
    campaign = db.session.get(Campaign, campaign_id)
    campaign.status, campaign.scheduled_for = "waiting", clock.morning
    db.session.commit()
    queued = []
    monkeypatch.setattr(
        jobs,
        "enqueue",
        lambda func, title, user_email=None, **kw: (
            queued.append((func, kw["campaign_id"])),
            SimpleNamespace(id=f"job-{len(queued)}"),
        )[1],
    )
    start = threading.Barrier(3)
    results, errors = [], []

    def race(action):
        with app.app_context():
            try:
                start.wait(timeout=10)
                results.append(action())
            except Exception as exc:  # reported below: a racer must not crash
                errors.append(exc)
            finally:
                db.session.remove()

    due = clock.morning.isoformat()
    racers = [
        threading.Thread(target=race, args=(fn,))
        for fn in (
            lambda: resuming.resume_campaign_job(None, campaign_id, due)["resumed"],
            lambda: resuming.resume_campaign_job(None, campaign_id, due)["resumed"],
            lambda: bool(resuming.resume_due(clock.morning)),
        )
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=60)
    assert errors == [] and sorted(results) == [False, False, True]
    assert queued == [(resuming.SEND_JOB, campaign_id)]
    assert _status(db, campaign_id) == "queued"


def test_a_resume_armed_for_an_earlier_time_leaves_a_rescheduled_campaign_alone(app, db, clock, night_campaign):
    campaign = db.session.get(Campaign, night_campaign.id)
    campaign.status, campaign.scheduled_for = "waiting", clock.morning
    db.session.commit()
    stale = (clock.morning - timedelta(hours=1)).isoformat()
    assert resuming.resume_campaign_job(None, campaign.id, stale)["resumed"] is False
    assert _status(db, campaign.id) == "waiting" and _jobs(db, resuming.SEND_JOB) == []


def test_server_start_resumes_due_campaigns_and_rearms_later_ones(
    app, db, thread_mode, clock, make_store, make_customer, monkeypatch
):
    """gunicorn's post_worker_init in thread mode: what came due while the server was down is
    queued; a campaign still waiting for later gets a timer again."""
    store = make_store("Corner Shop", timezone="America/New_York")
    for i in range(2):
        make_customer(store, phone=f"+1202555{3000 + i:04d}", sms_consent="opted_in")
    now = datetime.now(timezone.utc)
    overdue = campaigns.create_campaign("Overdue", {}, "Hi {code}", control_share=0)
    later = campaigns.create_campaign("Later", {}, "Hi {code}", control_share=0)
    for campaign, due in ((overdue, now - timedelta(hours=3)), (later, now + timedelta(days=2))):
        campaign.status, campaign.scheduled_for = "waiting", due
    db.session.commit()
    queued = []
    monkeypatch.setattr(
        jobs,
        "enqueue",
        lambda func, title, user_email=None, **kw: (
            queued.append(kw["campaign_id"]),
            SimpleNamespace(id="sent-elsewhere"),
        )[1],
    )

    hook = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["post_worker_init"]
    worker = SimpleNamespace(wsgi=app, log=SimpleNamespace(info=lambda *a: None, exception=pytest.fail))
    hook(worker)
    assert queued == [overdue.id] and _status(db, overdue.id) == "queued"
    [resume] = _jobs(db, resuming.RESUME_JOB)
    assert resume.kwargs["campaign_id"] == later.id and resume.id in app.extensions["loyalist_timers"]

    # A second start (another worker, a restart) re-arms that job instead of adding another one.
    app.extensions.pop("loyalist_timers").pop(resume.id).cancel()
    hook(worker)
    assert queued == [overdue.id] and [j.id for j in _jobs(db, resuming.RESUME_JOB)] == [resume.id]
    assert resume.id in app.extensions["loyalist_timers"]


@pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="REDIS_URL not set: the RQ variant runs in CI's second pass"
)
def test_rq_resume_waits_in_the_scheduled_registry_then_sends_once(
    app, db, clock, night_campaign, fake_twilio, monkeypatch
):
    from redis import Redis
    from rq import Queue, SimpleWorker
    from rq.registry import ScheduledJobRegistry

    monkeypatch.setitem(app.config, "JOBS_INLINE", False)
    monkeypatch.setitem(app.config, "REDIS_URL", os.environ["REDIS_URL"])
    connection = Redis.from_url(os.environ["REDIS_URL"])
    queue = Queue(jobs.QUEUE_NAME, connection=connection)
    registry = ScheduledJobRegistry(queue=queue)
    summary = sending.send_campaign(night_campaign.id)  # 22:00: nothing goes, the campaign waits
    assert "resumes by itself" in summary["message"] and fake_twilio.requests == []
    [resume] = _jobs(db, resuming.RESUME_JOB)
    try:
        assert resume.status == "scheduled"
        assert resume.id in registry.get_job_ids()
        assert registry.get_scheduled_time(resume.id) == clock.morning
        # 08:00: what RQ's scheduler does with a due job, then a worker runs the resume and the send.
        clock.now = clock.morning
        registry.remove(resume.id)
        queue.enqueue_job(queue.fetch_job(resume.id))
        SimpleWorker([queue], connection=connection).work(burst=True)
    finally:
        registry.remove(resume.id, delete_job=True)
    assert _finished(resume.id).result["resumed"] is True
    assert _status(db, night_campaign.id) == "done"
    per_phone = Counter(m["to"] for m in fake_twilio.messages)
    assert len(fake_twilio.requests) == 4 and set(per_phone.values()) == {1}
