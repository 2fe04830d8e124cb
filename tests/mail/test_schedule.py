"""The hourly clock queues both mail jobs once per hour across processes; cron's ``flask mail send-due``."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from portal.models import Job, MailMessage
from portal.services.mail import alerts, clock


def test_each_hour_is_claimed_once_and_queues_both_jobs(app, db):
    at = datetime(2026, 12, 7, 8, 0, 5, tzinfo=timezone.utc)
    first = clock.tick(at)
    assert len(first) == 2
    assert clock.tick(at.replace(minute=40)) == []  # another process (or a restart) in the same hour
    assert len(clock.tick(at.replace(hour=9))) == 2
    names = sorted(db.session.scalars(select(Job.func)).all())
    assert names == ["mail.alerts", "mail.alerts", "mail.digest", "mail.digest"]
    assert {job.status for job in db.session.scalars(select(Job))} == {"done"}  # JOBS_INLINE in tests


def test_clock_thread_is_not_started_in_tests(app):
    assert clock.start(app) is False


def test_send_due_for_cron(app, db, runner, make_store, make_user):
    store = make_store("Downtown")
    manager = make_user("manager", store=store)
    alerts.flow_paused(store.id, "Win-back", "Monthly SMS budget reached")
    result = runner.invoke(args=["mail", "send-due"])
    assert result.exit_code == 0, result.output
    assert "1 alerts" in result.output and "1 logged" in result.output
    row = db.session.scalar(select(MailMessage).where(MailMessage.user_id == manager.id))
    assert row.status == "logged"
    again = runner.invoke(args=["mail", "send-due"])
    assert "0 alerts" in again.output and "nothing to send" in again.output


def test_the_hourly_clock_keeps_the_automations_daily_run_scheduled(app, db, make_store):
    from portal.services.flows import runner

    at = datetime(2026, 12, 7, 8, 0, 5, tzinfo=timezone.utc)
    clock.tick(at)
    assert db.session.scalar(select(Job).where(Job.func == "flows.run")) is None  # no flow is on: nothing to run
    flow = runner.ensure_flows(make_store("Downtown"))[0]
    flow.enabled = True
    db.session.commit()
    clock.tick(at.replace(hour=9))
    clock.tick(at.replace(hour=10))
    scheduled = db.session.scalars(select(Job).where(Job.func == "flows.run", Job.status == "scheduled")).all()
    assert len(scheduled) == 1  # one daily run kept, not one per hour
