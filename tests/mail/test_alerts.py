"""Alerts: a valuable customer turning High through a real rescore is named (a low-value one is not),
failed imports, paused campaigns and automations, opt-out spikes; each once per event and user."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
from sqlalchemy import select

from portal import jobs
from portal.models import (
    AuditEntry,
    Campaign,
    ConsentEvent,
    Customer,
    ImportRun,
    MailEvent,
    MailMessage,
    OutboxMessage,
)
from portal.services.mail import alerts, events, preferences
from portal.services.scores import scoring
from tests.mail.conftest import parts, subject
from tests.mail.helpers import buy

BASE = "https://loyalist.example.com"


def _run_alerts():
    job = jobs.enqueue(alerts.JOB, "E-mail alerts")
    assert job.status in ("queued", "done")
    return job


def _bands(monkeypatch, high: set[str]):
    """Stand in for the churn model: the customers in ``high`` are High risk, everyone else Low."""

    def churn_for(inputs, values):
        index = inputs.features.index
        band = ["High" if str(c) in high else "Low" for c in index]
        p = [0.9 if b == "High" else 0.1 for b in band]
        return pd.DataFrame({"churn_probability": p, "churn_band": band}, index=index)

    monkeypatch.setattr(scoring, "churn_for", churn_for)


def test_a_valuable_customer_turning_high_is_named_and_a_low_value_one_is_not(
    app, db, smtp, monkeypatch, make_store, make_customer, make_user
):
    store = make_store("Downtown")
    manager = make_user("manager", store=store)
    outsider = make_user("manager", email="manager-uptown@example.com", store=make_store("Uptown"))
    vip = make_customer(store, external_id="VIP1", name="Vera Valuable")
    small = make_customer(store, external_id="LOW1", name="Sam Small")
    others = [make_customer(store, external_id=f"MID{i}") for i in range(8)]
    for day in ("2026-06-01", "2026-08-01", "2026-10-01"):
        buy(vip, store, f"{day} 10:00", "2000.00")
        buy(small, store, f"{day} 10:00", "1.00")
        for other in others:
            buy(other, store, f"{day} 10:00", "50.00")

    _bands(monkeypatch, high=set())
    scoring.rescore_all(reason="first scoring")  # every band is new: nothing "became" anything yet
    assert db.session.scalar(select(Customer.churn_band).where(Customer.id == vip.id)) == "Low"
    _run_alerts()
    assert smtp.messages == []

    _bands(monkeypatch, high={"VIP1", "LOW1"})
    scoring.rescore_all(reason="rescored")
    _run_alerts()
    _run_alerts()  # once per event and user, however often the job runs

    received = smtp.to(manager.email)
    assert len(received) == 1
    message = received[0]
    assert subject(message) == "1 valuable customer became High risk or Lapsing — Downtown"
    body = parts(message)
    text, html = body["text/plain"], body["text/html"]
    assert "Vera Valuable (VIP1): High risk, 12-month value $6,000.00" in text
    offer = f"{BASE}/campaigns?customer=VIP1&purpose=win_back"
    assert offer in text and offer.replace("&", "&amp;") in html
    assert "Sam Small" not in text and "LOW1" not in text
    assert smtp.to(outsider.email) == []  # another store's manager hears nothing of it
    moves = db.session.scalars(select(MailEvent).where(MailEvent.kind == "bands")).all()
    assert [m.data["moves"] for m in moves] == [{"Low→High": 2}]


def test_a_failed_import_alerts_the_store_and_admins_once(app, db, smtp, make_store, make_user):
    store = make_store("Downtown")
    manager = make_user("manager", store=store)
    admin = make_user("admin")
    outsider = make_user("manager", email="manager-uptown@example.com", store=make_store("Uptown"))
    db.session.add(
        ImportRun(
            kind="transactions",
            filename="nightly.csv",
            store_id=store.id,
            user_email="cli",
            source="cli",
            status="refused",
            message="None of the 120 rows can be imported; see the problems.",
        )
    )
    db.session.commit()

    _run_alerts()
    _run_alerts()

    for user in (manager, admin):
        (message,) = smtp.to(user.email)
        assert subject(message) == "Import refused: nightly.csv — Downtown"
        assert "None of the 120 rows can be imported" in parts(message)["text/plain"]
        assert f"{BASE}/imports" in parts(message)["text/plain"]
    assert smtp.to(outsider.email) == []


def test_paused_campaigns_and_automations_alert_once(app, db, smtp, make_store, make_user):
    store = make_store("Downtown")
    manager = make_user("manager", store=store)
    campaign = Campaign(name="Winter win-back", store_id=store.id, template="Hi {first_name}", status="waiting")
    db.session.add(campaign)
    db.session.commit()
    db.session.add(
        AuditEntry(
            action="campaign.paused",
            target=f"campaign:{campaign.id}",
            detail={"reason": "3 sends in a row could not connect to Twilio"},
            user_email="worker",
        )
    )
    db.session.commit()
    assert alerts.flow_paused(store.id, "Win-back", "Monthly SMS budget reached")
    assert not alerts.flow_paused(store.id, "Win-back", "Monthly SMS budget reached")  # same pause, same day

    _run_alerts()
    _run_alerts()

    subjects = sorted(subject(m) for m in smtp.to(manager.email))
    assert subjects == [
        "Automation paused: Win-back — Downtown",
        "Campaign paused: Winter win-back — Downtown",
    ]
    campaign_mail = next(m for m in smtp.to(manager.email) if "Campaign" in subject(m))
    assert "could not connect to Twilio" in parts(campaign_mail)["text/plain"]
    assert f"{BASE}/campaigns/{campaign.id}" in parts(campaign_mail)["text/plain"]


def test_an_opt_out_spike_after_a_send_alerts_once(app, db, smtp, make_store, make_customer, make_user):
    store = make_store("Downtown")
    manager = make_user("manager", store=store)
    started = datetime.now(timezone.utc) - timedelta(hours=30)
    campaign = Campaign(name="Flash sale", store_id=store.id, template="x", status="done", started_at=started)
    quiet = Campaign(name="Polite", store_id=store.id, template="x", status="done", started_at=started)
    db.session.add_all([campaign, quiet])
    db.session.commit()
    for i in range(40):
        customer = make_customer(store)
        for c in (campaign, quiet):
            db.session.add(
                OutboxMessage(
                    campaign_id=c.id, customer_id=customer.id, group="message", status="delivered", sent_at=started
                )
            )
        if i < 4:  # 10 % of the flash sale's recipients reply STOP (threshold 5 %); only 1 of them is in 'quiet'
            db.session.add(
                ConsentEvent(
                    customer_id=customer.id,
                    status="opted_out",
                    source="sms_keyword",
                    keyword="STOP",
                    effective_at=started + timedelta(hours=2),
                )
            )
    db.session.commit()
    # 'quiet' shares the same recipients: make its send later than the STOPs so none count for it
    quiet.started_at = started + timedelta(hours=3)
    db.session.commit()

    _run_alerts()
    _run_alerts()

    (message,) = smtp.to(manager.email)
    assert subject(message) == "Opt-outs after “Flash sale”: 10.0 % replied STOP — Downtown"
    assert "4 recipients of 40 (10.0 %) replied STOP within 48 hours" in parts(message)["text/plain"]


def test_a_user_who_switched_an_alert_off_does_not_get_it(app, db, smtp, make_store, make_user):
    store = make_store("Downtown")
    manager = make_user("manager", store=store)
    preferences.save(manager, {k: k != "paused" for k in preferences.KINDS}, weekday=0, hour=8)
    assert alerts.flow_paused(store.id, "Win-back", "Monthly SMS budget reached")
    _run_alerts()
    assert smtp.to(manager.email) == []
    assert db.session.scalars(select(MailMessage)).all() == []


def test_rescore_hook_never_breaks_scoring(app, db, monkeypatch):
    monkeypatch.setattr(events, "_note_rescore", lambda frame: 1 / 0)
    assert events.note_rescore(pd.DataFrame({"churn_band": ["High"]}, index=["X"])) == {}


def test_a_valuable_customer_turning_lapsing_is_named_but_not_one_coming_back_from_lost(
    app, db, smtp, make_store, make_customer, make_user
):
    store = make_store("Downtown")
    manager = make_user("manager", store=store)
    make_customer(store, external_id="V1", name="Lia Lapsing", churn_band="Medium", lifecycle="Active")
    make_customer(store, external_id="V2", name="Leo Lost", churn_band="Medium", lifecycle="Lost")
    for i in range(8):
        make_customer(store, external_id=f"M{i}", churn_band="Low", lifecycle="Active")
    frame = pd.DataFrame(
        {
            "churn_band": ["Medium", "Medium"] + ["Low"] * 8,
            "lifecycle": ["Lapsing", "Lapsing"] + ["Active"] * 8,
            "spend_12m": [900.0, 800.0] + [10.0] * 8,
        },
        index=["V1", "V2"] + [f"M{i}" for i in range(8)],
    )
    assert events.note_rescore(frame)["customers"] == 1
    _run_alerts()
    (message,) = smtp.to(manager.email)
    text = parts(message)["text/plain"]
    assert "Lia Lapsing (V1): Lapsing, 12-month value $900.00" in text
    assert "Leo Lost" not in text  # Lost → Lapsing is a customer coming back, not news to alert about
