"""The automations pages, the CLI, the job after a rescore, and the unread replies badge."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from portal.models import Customer, Flow, FlowEntry, Job, SmsEvent
from portal.services.campaigns import replies as reply_service
from portal.services.flows import runner
from tests.conftest import PASSWORD, csrf_token, login


@pytest.fixture()
def harbor(make_store):
    return make_store("Harbor", timezone="America/New_York")


@pytest.fixture()
def uptown(make_store):
    return make_store("Uptown", timezone="America/Chicago")


def _lapsed(db, store, n=3, prefix="H"):
    for i in range(n):
        db.session.add(
            Customer(
                external_id=f"{prefix}{i}",
                name=f"Ann{i} Lee",
                phone=f"+1202555{3000 + i + (500 if prefix != 'H' else 0):04d}",
                store_id=store.id,
                sms_consent="opted_in",
                churn_band="High",
                last_purchase_at=datetime.now() - timedelta(days=40),
            )
        )
    db.session.commit()


def test_manager_switches_a_flow_on_and_sees_its_preview(client, db, harbor, uptown, make_user):
    _lapsed(db, harbor)
    _lapsed(db, harbor, 1, prefix="Z")
    db.session.get(Customer, 4).sms_consent = "opted_out"
    db.session.commit()
    user = make_user("manager", store=harbor)
    assert login(client, user.email, PASSWORD).status_code == 302
    page = client.get("/flows").get_data(as_text=True)
    assert "Win-back" in page and "Birthday" in page and "Uptown" not in page
    flow = db.session.scalar(select(Flow).where(Flow.store_id == harbor.id, Flow.kind == "win_back"))
    token = csrf_token(client, "/flows")
    response = client.post(f"/flows/{flow.id}/switch", data={"csrf_token": token, "enabled": "1"})
    assert response.status_code == 302
    db.session.refresh(flow)
    assert flow.enabled
    detail = client.get(f"/flows/{flow.id}").get_data(as_text=True)
    assert "The rule names 4 customers; 3 would enter today" in detail
    assert "Opted out: 1" in detail
    examples = detail.split('id="preview-examples"')[1].split("</ul>")[0]
    assert 1 <= examples.count("Reply STOP to opt out") <= 3 and "Come back to Harbor" in examples
    assert "Not enough data yet" in detail or "No customer has entered" in detail
    # Another store's flow: not found.
    other = runner.ensure_flows(uptown)[0]
    assert client.get(f"/flows/{other.id}").status_code == 404
    assert client.post(f"/flows/{other.id}/switch", data={"csrf_token": token, "enabled": "1"}).status_code == 404


def test_marketers_look_but_do_not_switch_or_edit(client, db, harbor, make_user):
    user = make_user("marketer", store=harbor)
    login(client, user.email, PASSWORD)
    assert client.get("/flows").status_code == 200
    flow = runner.ensure_flows(harbor)[0]
    token = csrf_token(client, "/flows")
    assert client.post(f"/flows/{flow.id}/switch", data={"csrf_token": token, "enabled": "1"}).status_code == 403
    assert client.get(f"/flows/{flow.id}/edit").status_code == 403


def test_edit_refuses_bad_values_with_a_message(client, db, harbor, make_user):
    user = make_user("admin")
    login(client, user.email, PASSWORD)
    flow = {f.kind: f for f in runner.ensure_flows(harbor)}["near_tier"]
    path = f"/flows/{flow.id}/edit"
    base = {
        "csrf_token": csrf_token(client, path),
        "template": "Hi {first_name}, {nope}",
        "cooldown_days": "30",
        "control_share": "10",
        "daily_limit": "100",
        "expiry_days": "14",
        "param_max_gap_amount": "25",
        "param_max_gap_pct": "5",
    }
    bad = client.post(path, data=base)
    assert bad.status_code == 200 and "Unknown placeholder {nope}" in bad.get_data(as_text=True)
    worse = client.post(path, data={**base, "template": "ok {code}", "control_share": "80"})
    assert worse.status_code == 200 and "50" in worse.get_data(as_text=True)
    good = client.post(path, data={**base, "template": "Close to {tier}? {code}"})
    assert good.status_code == 302
    db.session.refresh(flow)
    assert flow.params == {"max_gap_amount": 25, "max_gap_pct": 5} and flow.template == "Close to {tier}? {code}"


def test_cli_runs_every_enabled_flow_once(runner_cli, db, harbor):
    _lapsed(db, harbor)
    flow = runner.ensure_flows(harbor)[0]
    flow.enabled, flow.control_share = True, 0.0
    db.session.commit()
    first = runner_cli.invoke(args=["flows", "run", "--store", "Harbor"])
    assert first.exit_code == 0, first.output
    assert "3 customers entered, 3 messages" in first.stdout
    again = runner_cli.invoke(args=["flows", "run"])
    assert (
        again.exit_code == 0 and "0 customers entered" in again.stdout and "3 already had this episode" in again.stdout
    )
    assert runner_cli.invoke(args=["flows", "run", "--store", "Nowhere"]).exit_code == 1


@pytest.fixture()
def runner_cli(app):
    return app.test_cli_runner()


def test_the_job_runs_the_flows_and_keeps_tomorrows_run_scheduled(app, db, harbor):
    from portal.services.flows.jobs import request_run

    assert request_run() is None  # nothing switched on: no job
    _lapsed(db, harbor)
    flow = runner.ensure_flows(harbor)[0]
    flow.enabled = True
    db.session.commit()
    job = request_run()  # JOBS_INLINE runs it at once
    db.session.expire_all()
    assert db.session.get(Job, job.id).status == "done"
    assert len(db.session.scalars(select(FlowEntry)).all()) == 3
    assert db.session.scalar(select(Job).where(Job.status == "scheduled", Job.func == "flows.run")) is not None


def test_a_rescore_runs_the_enabled_flows_on_the_new_scores(app, db, harbor, seed_lines):
    from portal.services.scores import scoring
    from tests.conftest import synthetic_lines

    seed_lines(synthetic_lines(n_customers=40, days=400), store=harbor)
    scoring.rescore_all()  # no flow on: nothing enters
    assert db.session.scalars(select(FlowEntry)).all() == []
    for c in db.session.scalars(select(Customer)):
        c.sms_consent, c.phone = "opted_in", f"+1202555{5000 + c.id:04d}"
    flow = runner.ensure_flows(harbor)[0]
    flow.enabled, flow.params = True, {"gap_multiple": 1.0}
    db.session.commit()
    scoring.rescore_all()
    assert db.session.scalars(select(FlowEntry)).all()  # the lapsed ones of the new scores entered


def test_unread_replies_badge_and_mark_read(client, db, harbor, uptown, make_user):
    _lapsed(db, harbor, 1)
    _lapsed(db, uptown, 1, prefix="U")
    mine = db.session.scalar(select(Customer).where(Customer.store_id == harbor.id))
    theirs = db.session.scalar(select(Customer).where(Customer.store_id == uptown.id))
    for i, (phone, body) in enumerate(
        [(mine.phone, "What time do you open?"), (mine.phone, "STOP"), (theirs.phone, "Thanks!")]
    ):
        reply_service.record_reply({"MessageSid": f"SM{i:032d}", "From": phone, "Body": body})
    user = make_user("manager", store=harbor)
    login(client, user.email, PASSWORD)
    page = client.get("/flows").get_data(as_text=True)
    assert "1 unread reply from customers" in page
    replies = client.get("/flows/replies").get_data(as_text=True)
    listed = replies.split('id="replies"')[1].split("</ul>")[0]
    assert "What time do you open?" in listed and "Thanks!" not in listed and "STOP" not in listed
    assert "unread repl" not in client.get("/flows").get_data(as_text=True)
    events = db.session.scalars(select(SmsEvent).where(SmsEvent.read_at.isnot(None))).all()
    assert [e.from_phone for e in events] == [mine.phone]


def test_admin_sees_the_budget_pause_on_the_dashboard(client, db, harbor, make_user):
    from portal.services import audit

    audit.record("flows.budget_reached", f"store:{harbor.id}", {"budget": 5}, "automation")
    db.session.commit()
    from portal.services import settings

    settings.update({"sms.monthly_budget": "5"})
    user = make_user("admin")
    login(client, user.email, PASSWORD)
    page = client.get("/").get_data(as_text=True)
    assert "Harbor: the monthly SMS budget ($5.00) was reached" in page
    assert datetime.now(timezone.utc)
