"""Exactly once: a mail is claimed and committed as 'sending' before SMTP; a sender killed at any point
never causes a second copy, and a row stuck in 'sending' becomes 'unknown' (never re-sent by itself)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from portal.models import MailMessage
from portal.services.clock import utcnow
from portal.services.mail import alerts, outbox, transport

ROOT = Path(__file__).resolve().parents[2]


class Killed(BaseException):
    """Stands in for the process dying (nothing after it runs; not an Exception, so nothing catches it)."""


def _queue_one(store, make_user) -> MailMessage:
    manager = make_user("manager", store=store)
    alerts.flow_paused(store.id, "Win-back", "Monthly SMS budget reached")
    assert alerts.build_for_events() == 1
    return outbox.db.session.scalar(select(MailMessage).where(MailMessage.user_id == manager.id))


def _status(db, row_id: int) -> str:
    db.session.expire_all()
    return db.session.get(MailMessage, row_id).status


def test_killed_after_the_claim_before_smtp_it_is_not_sent_blindly(app, db, smtp, monkeypatch, make_store, make_user):
    row = _queue_one(make_store("Downtown"), make_user)

    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(transport.Connection, "send", die)
    with pytest.raises(Killed):
        outbox.deliver()
    assert _status(db, row.id) == "sending"
    monkeypatch.undo()

    assert outbox.deliver() == {}  # within the lease: another worker may be sending it; left alone
    assert outbox.deliver(now=utcnow() + outbox.LEASE + timedelta(seconds=1)) == {}
    assert _status(db, row.id) == "unknown"
    assert smtp.messages == []


def test_killed_after_smtp_accepted_it_is_sent_once(app, db, smtp, monkeypatch, make_store, make_user):
    row = _queue_one(make_store("Downtown"), make_user)
    recorded = outbox._record

    def die_before_recording(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(outbox, "_record", die_before_recording)
    with pytest.raises(Killed):
        outbox.deliver()
    monkeypatch.setattr(outbox, "_record", recorded)
    assert len(smtp.messages) == 1 and _status(db, row.id) == "sending"

    alerts.alerts_job(progress=lambda *a: None)  # the hourly job again
    outbox.deliver(now=utcnow() + outbox.LEASE * 2)
    assert len(smtp.messages) == 1
    assert _status(db, row.id) == "unknown"
    assert "may have arrived" in db.session.get(MailMessage, row.id).error


def test_a_worker_killed_with_sigkill_mid_send_leaves_one_copy(app, db, smtp, make_store, make_user):
    """``flask mail send-due`` in its own process, SIGKILLed while the SMTP server holds its DATA answer."""
    row = _queue_one(make_store("Downtown"), make_user)
    db.session.commit()
    smtp.hold_seconds = 30
    env = dict(
        os.environ,
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        SECRET_KEY=app.config["SECRET_KEY"],
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(app.config["MAIL_PORT"]),
        MAIL_USE_TLS="0",
        JOBS_NICE="0",
    )
    env.pop("REDIS_URL", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app:create_app", "mail", "send-due"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert smtp.arrived.wait(90), child.communicate(timeout=5)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    smtp.hold_seconds = 0
    assert len(smtp.messages) == 1 and _status(db, row.id) == "sending"

    alerts.alerts_job(progress=lambda *a: None)
    outbox.deliver(now=utcnow() + outbox.LEASE * 2)
    assert len(smtp.messages) == 1
    assert _status(db, row.id) == "unknown"


def test_no_connection_means_not_sent_and_retried_later(app, db, make_store, make_user):
    row = _queue_one(make_store("Downtown"), make_user)
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=1, MAIL_USE_TLS=False)  # nothing listens on port 1
    try:
        assert outbox.deliver() == {"retry": 1}
    finally:
        app.config.update(MAIL_SERVER=None)
    db.session.expire_all()
    again = db.session.get(MailMessage, row.id)
    assert again.status == "pending" and "could not connect" in again.error
    assert again.next_attempt_at is not None


def test_two_jobs_building_the_same_mail_make_one_row(app, db, make_store, make_user):
    store = make_store("Downtown")
    manager = make_user("manager", store=store)
    assert outbox.add(manager, "digest", "digest:2026-W49", store.id, "s", "t", "<p>h</p>", None)
    assert not outbox.add(manager, "digest", "digest:2026-W49", store.id, "s", "t", "<p>h</p>", None)
    assert len(db.session.scalars(select(MailMessage)).all()) == 1
