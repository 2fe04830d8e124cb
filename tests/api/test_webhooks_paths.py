"""Outgoing webhooks from every path, not only the API's: file imports and the rescore after them, full
rescores (grouped deliveries), coupons redeemed on the page or by an import, opt-outs from the customer
page and STOP replies; and nothing at all when no endpoint subscribes."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from portal.models import (
    Campaign,
    Customer,
    ImportRun,
    OutboxMessage,
    Product,
    PurchaseLine,
    TierChange,
    WebhookDelivery,
)
from portal.services import settings as settings_service
from portal.services import webhooks_out
from portal.services.campaigns import campaigns, redemption
from portal.services.scores import scoring, training
from portal.services.scores import store as score_store
from portal.sms import compute_signature
from tests.api.test_webhooks_out import Receiver, register
from tests.conftest import post_form, synthetic_lines

TWILIO_TOKEN = "test-twilio-auth-token"
PUBLIC = "https://loyalist.example.com"


@pytest.fixture()
def hook(client, login_as):
    """An admin registers a receiver for ``events`` (all by default); returns the receiver."""
    made = []

    def make(events=tuple(webhooks_out.EVENTS)):
        if not made:
            login_as("admin")
        receiver = Receiver(())
        receiver.secret = register(client, receiver.url, list(events)).encode()
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


def received(receiver, event=None):
    """The events the receiver got (each checked: its signature verified), optionally of one type."""
    assert all(ok for ok, _ in receiver.received), "a delivery's signature did not verify"
    return [body for _, body in receiver.received if event is None or body["type"] == event]


@pytest.fixture()
def trained(db, seed_lines):
    """A store of 150 customers with every model trained, scored once, and a fixed tier bar."""
    store = seed_lines(synthetic_lines(n_customers=150, days=700, seed=11))
    settings_service.update({"tiers.bar": "fixed", "tier.min_frequency": "3", "tier.min_monetary": "300"})
    training.train_all()
    scoring.rescore_all(reason="baseline")
    return store


def grouped_customers(receiver, event):
    """The customers of a full rescore's grouped deliveries of ``event``, with the deliveries."""
    bodies = received(receiver, event)
    for body in bodies:
        data = body["data"]
        assert data["rescore"] == "full" and 1 <= data["part"] <= data["parts"]
        assert len(data["customers"]) <= webhooks_out.delivery.RESCORE_GROUP
    return [c for body in bodies for c in body["data"]["customers"]], bodies


# --- full rescores ------------------------------------------------------------------------------------


def test_a_full_rescore_that_moves_customers_sends_their_tier_changes_grouped(app, db, trained, hook, monkeypatch):
    receiver = hook(["customer.tier_changed", "customer.high_risk", "customer.lost"])
    monkeypatch.setattr(webhooks_out.delivery, "RESCORE_GROUP", 3)  # small groups: several parts
    before = db.session.scalar(select(func.max(TierChange.id))) or 0
    settings_service.update({"tier.min_frequency": "8", "tier.min_monetary": "900"})  # a higher bar: many drop out
    scoring.rescore_all(reason="bar raised")
    moves = db.session.execute(
        select(TierChange.customer_id, Customer.external_id, TierChange.old_tier, TierChange.new_tier)
        .join(Customer, Customer.id == TierChange.customer_id)
        .where(TierChange.id > before)
    ).all()
    assert len(moves) > 3  # the bar moved customers, more than one group's worth
    customers, bodies = grouped_customers(receiver, "customer.tier_changed")
    assert len(bodies) == -(-len(moves) // 3) and {b["data"]["parts"] for b in bodies} == {len(bodies)}
    assert sorted(b["data"]["part"] for b in bodies) == list(range(1, len(bodies) + 1))
    assert {b["data"]["count"] for b in bodies} == {len(moves)} and {b["data"]["reason"] for b in bodies} == {
        "bar raised"
    }
    assert sorted((c["customer_id"], c["external_id"], c["old_tier"], c["new_tier"]) for c in customers) == sorted(
        tuple(m) for m in moves
    )
    assert len({b["id"] for b in bodies}) == len(bodies)  # each part its own event id
    rows = db.session.scalars(select(WebhookDelivery).where(WebhookDelivery.event == "customer.tier_changed")).all()
    assert len(rows) == len(bodies) and {r.status for r in rows} == {"delivered"}


def test_a_full_rescore_sends_new_high_risk_and_newly_lost_customers(app, db, trained, hook):
    receiver = hook(["customer.high_risk", "customer.lost"])
    # Make some customers look Low risk and Active before the rescore: the rescore puts them back.
    before = {
        cid: (band, status)
        for cid, band, status in db.session.execute(select(Customer.id, Customer.churn_band, Customer.lifecycle))
    }
    high = [cid for cid, (band, _) in before.items() if band == "High"]
    lost = [cid for cid, (_, status) in before.items() if status == "Lost"]
    assert high and lost  # the synthetic store has both
    db.session.execute(update(Customer).where(Customer.id.in_(high)).values(churn_band="Low"))
    db.session.execute(update(Customer).where(Customer.id.in_(lost)).values(lifecycle="Active"))
    db.session.commit()
    scoring.rescore_all(reason="nightly")
    risky, _ = grouped_customers(receiver, "customer.high_risk")
    gone, _ = grouped_customers(receiver, "customer.lost")
    assert sorted(c["customer_id"] for c in risky) == sorted(high)
    assert all(0.7 < c["churn_probability"] <= 1 for c in risky)
    assert sorted(c["customer_id"] for c in gone) == sorted(lost)
    assert received(receiver, "customer.tier_changed") == []  # not subscribed


def test_nothing_is_computed_or_sent_when_no_endpoint_subscribes(app, db, trained, hook, monkeypatch, runner, tmp_path):
    asked = []
    real_store = score_store.store

    def spy(frame, with_tiers, reason, with_transitions=False):
        asked.append(with_transitions)
        return real_store(frame, with_tiers, reason, with_transitions)

    monkeypatch.setattr(score_store, "store", spy)
    settings_service.update({"tier.min_frequency": "8", "tier.min_monetary": "900"})
    scoring.rescore_all(reason="bar raised")  # no endpoint at all
    receiver = hook(["coupon.redeemed"])  # an endpoint, but not for these events
    settings_service.update({"tier.min_frequency": "3", "tier.min_monetary": "300"})
    scoring.rescore_all(reason="bar lowered")
    assert asked == [False, False]  # the old bands/lifecycles were never read for transitions
    assert db.session.scalar(select(func.count(TierChange.id))) > 0  # customers did move
    path = tmp_path / "sales.csv"
    path.write_text(
        "customer_id,transaction_id,purchase_date,product_id,quantity,price_per_unit\nN1,NT1,2026-10-30,P1,1,5\n"
    )
    assert runner.invoke(args=["import", "transactions", str(path), "--store", trained.name]).exit_code == 0
    assert db.session.scalar(select(func.count(WebhookDelivery.id))) == 0 and receiver.received == []


# --- file imports -------------------------------------------------------------------------------------


def _sales(rows):
    header = "customer_id,transaction_id,purchase_date,product_id,product_name,quantity,price_per_unit\n"
    return header + "".join(",".join(str(v) for v in row) + "\n" for row in rows)


def test_a_cli_file_import_sends_the_rescore_moves_then_import_finished(app, db, trained, hook, runner, tmp_path):
    receiver = hook()
    rows = [("NEW1", f"N-{i}", f"2026-10-{20 + i}", "P001", "Mug", 2, 150) for i in range(5)]
    path = tmp_path / "sales.csv"
    path.write_text(_sales(rows))
    result = runner.invoke(args=["import", "transactions", str(path), "--store", trained.name])
    assert result.exit_code == 0, result.output
    run = db.session.scalar(select(ImportRun).order_by(ImportRun.id.desc()))
    new = db.session.scalar(select(Customer).where(Customer.external_id == "NEW1"))
    assert new.tier is not None  # five purchases of 300: the rescore after the import gave a tier
    finished = received(receiver, "import.finished")
    assert [e["data"] for e in finished] == [
        {
            "import_id": run.id,
            "source": "file",
            "kind": "transactions",
            "status": "done",
            "lines": 5,
            "new": 5,
            "rejected": 0,
            "message": None,
        }
    ]
    customers, bodies = grouped_customers(receiver, "customer.tier_changed")
    assert {"customer_id": new.id, "external_id": "NEW1", "old_tier": None, "new_tier": new.tier} == {
        k: v for k, v in next(c for c in customers if c["external_id"] == "NEW1").items() if k != "reason"
    }
    assert {b["data"]["reason"] for b in bodies} == {f"rescored after import #{run.id}"}
    types = [body["type"] for body in received(receiver)]
    assert types.index("import.finished") == len(types) - 1  # after the moves: the scores are current


def test_a_page_import_and_a_refused_one_send_import_finished(app, db, client, make_store, hook):
    store = make_store("Downtown")
    receiver = hook(["import.finished"])  # logs in as an admin
    for name, text in (
        ("good.csv", _sales([("C9", "T9", "2026-10-01", "P1", "Mug", 1, 4.5)])),
        ("empty.csv", _sales([])),
    ):
        data = {"kind": "transactions", "store_id": str(store.id), "file": (io.BytesIO(text.encode()), name)}
        response = post_form(client, "/imports", data, token_from="/imports", content_type="multipart/form-data")
        assert response.status_code == 302
        run = db.session.scalar(select(ImportRun).order_by(ImportRun.id.desc()))
        if run.status == "pending":
            mapping = {f"map_{field}": header for field, header in run.mapping.items() if header}
            assert post_form(client, f"/imports/{run.id}/mapping", mapping).status_code == 302
    runs = db.session.scalars(select(ImportRun).order_by(ImportRun.id)).all()
    assert [(r.status, r.message) for r in runs] == [("done", None), ("refused", runs[1].message)] and runs[1].message
    assert [e["data"] for e in received(receiver)] == [
        {
            "import_id": runs[0].id,
            "source": "file",
            "kind": "transactions",
            "status": "done",
            "lines": 1,
            "new": 1,
            "rejected": 0,
            "message": None,
        },
        {
            "import_id": runs[1].id,
            "source": "file",
            "kind": "transactions",
            "status": "refused",
            "lines": 0,
            "new": 0,
            "rejected": 0,
            "message": runs[1].message,
        },
    ]


def test_a_file_import_that_fails_sends_import_finished_failed(
    app, db, make_store, hook, runner, tmp_path, monkeypatch
):
    from portal.services.importer import runs

    make_store("Downtown")
    receiver = hook(["import.finished"])

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(runs, "_stage_and_merge", broken)
    path = tmp_path / "sales.csv"
    path.write_text(_sales([("C9", "T9", "2026-10-01", "P1", "Mug", 1, 4.5)]))
    runner.invoke(args=["import", "transactions", str(path), "--store", "Downtown"])
    run = db.session.scalar(select(ImportRun).order_by(ImportRun.id.desc()))
    assert run.status == "failed"
    [event] = received(receiver)
    assert event["data"]["import_id"] == run.id and event["data"]["status"] == "failed"
    assert event["data"]["source"] == "file" and event["data"]["message"] == run.message


# --- coupons ------------------------------------------------------------------------------------------


@pytest.fixture()
def sent_coupons(db, make_store, make_customer):
    """Two customers messaged an hour ago with codes that expire in five days."""
    store = make_store("Corner Shop", timezone="America/New_York")
    now = datetime.now(timezone.utc)
    people = [
        make_customer(store, name=n, sms_consent="opted_in", sms_consent_at=now - timedelta(days=90))
        for n in ("Ann Lee", "Bob Day")
    ]
    campaigns.create_campaign("Spring", {}, "Hi {first_name}, code {code}", control_share=0)
    db.session.execute(update(OutboxMessage).values(status="dry-run", sent_at=now - timedelta(hours=1)))
    db.session.execute(update(Campaign).values(expires_at=now + timedelta(days=5)))
    db.session.commit()
    rows = {r.customer_id: r for r in db.session.scalars(select(OutboxMessage))}
    return store, [(p, rows[p.id]) for p in people]


def test_a_coupon_redeemed_on_the_page_or_by_an_import_is_sent(app, db, client, hook, sent_coupons):
    store, [(ann, ann_row), (bob, bob_row)] = sent_coupons
    receiver = hook(["coupon.redeemed"])
    response = post_form(
        client, "/campaigns/redeem", {"customer_id": ann.id, "code": ann_row.coupon_code}, token_from="/campaigns"
    )
    assert response.status_code == 302
    [event] = received(receiver)
    assert event["type"] == "coupon.redeemed"
    data = event["data"]
    assert (data["code"], data["customer_id"], data["external_id"], data["by"]) == (
        ann_row.coupon_code,
        ann.id,
        ann.external_id,
        "staff",
    )
    assert data["campaign_id"] == ann_row.campaign_id and data["redeemed_at"]

    product = Product(external_id="MUG", name="Mug")
    db.session.add(product)
    db.session.flush()
    at_local = datetime.now(timezone.utc).astimezone(timezone(timedelta(hours=-5))).replace(tzinfo=None)
    db.session.add(
        PurchaseLine(
            transaction_ref="T1",
            product_id=product.id,
            line_no=0,
            customer_id=bob.id,
            store_id=store.id,
            purchased_at=at_local,
            quantity=1,
            unit_price=10,
            amount=10,
            coupon_code=bob_row.coupon_code,
            import_id=None,
        )
    )
    db.session.commit()
    assert redemption.redeem_from_imports().redeemed == 1  # what the importer runs after every import
    [_, event] = received(receiver)
    assert (event["data"]["external_id"], event["data"]["by"], event["data"]["import_id"]) == (
        bob.external_id,
        "import",
        None,
    )


# --- opt-outs -----------------------------------------------------------------------------------------


def test_an_opt_out_on_the_customer_page_is_sent_once(app, db, client, hook, make_customer):
    customer = make_customer(sms_consent="opted_in", sms_consent_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    receiver = hook(["customer.opted_out"])
    page = f"/customers/{customer.id}"
    assert post_form(client, page, {"status": "opted_out", "source": "phone call"}).status_code == 302
    assert post_form(client, page, {"status": "opted_out", "source": "again"}).status_code == 302  # no change
    assert [e["data"] for e in received(receiver)] == [
        {"customer_id": customer.id, "external_id": customer.external_id, "source": "staff"}
    ]


@pytest.fixture()
def twilio(app):
    """Twilio's callbacks signed for PUBLIC: ``twilio(path, params)`` posts one."""
    saved = app.config.get("TWILIO_AUTH_TOKEN"), app.config.get("PUBLIC_BASE_URL")
    app.config["TWILIO_AUTH_TOKEN"], app.config["PUBLIC_BASE_URL"] = TWILIO_TOKEN, PUBLIC
    client = app.test_client()

    def post(path, params):
        signature = compute_signature(TWILIO_TOKEN, PUBLIC + path, params)
        return client.post(path, data=params, headers={"X-Twilio-Signature": signature})

    yield post
    app.config["TWILIO_AUTH_TOKEN"], app.config["PUBLIC_BASE_URL"] = saved


def test_a_stop_reply_is_sent_as_an_opt_out(app, db, hook, make_customer, twilio):
    customer = make_customer(
        phone="+12025550142", sms_consent="opted_in", sms_consent_at=datetime(2025, 1, 1, tzinfo=timezone.utc)
    )
    receiver = hook(["customer.opted_out"])
    params = {"MessageSid": "SM" + "7" * 32, "From": "+12025550142", "To": "+15005550006", "Body": "STOP"}
    assert twilio("/sms/inbound", params).status_code == 200
    assert twilio("/sms/inbound", {**params, "MessageSid": "SM" + "8" * 32}).status_code == 200  # again: no change
    assert db.session.get(Customer, customer.id).sms_consent == "opted_out"
    assert [e["data"] for e in received(receiver)] == [
        {"customer_id": customer.id, "external_id": customer.external_id, "source": "sms_reply"}
    ]


def test_twilio_error_21610_is_sent_as_an_opt_out(app, db, hook, sent_coupons, twilio):
    _store, [(ann, ann_row), _] = sent_coupons
    db.session.execute(update(OutboxMessage).where(OutboxMessage.id == ann_row.id).values(message_sid="SM" + "5" * 32))
    db.session.commit()
    receiver = hook(["customer.opted_out"])
    params = {"MessageSid": "SM" + "5" * 32, "MessageStatus": "failed", "ErrorCode": "21610", "To": ann.phone}
    assert twilio("/sms/status", params).status_code == 204
    assert db.session.get(Customer, ann.id).sms_consent == "opted_out"
    assert [e["data"] for e in received(receiver)] == [
        {"customer_id": ann.id, "external_id": ann.external_id, "source": "twilio"}
    ]


def test_a_customers_file_that_opts_customers_out_sends_each(
    app, db, make_store, make_customer, hook, runner, tmp_path
):
    store = make_store("Downtown")
    ann = make_customer(store=store, external_id="C1", sms_consent="opted_in", sms_consent_at=datetime(2025, 1, 1))
    make_customer(store=store, external_id="C2", sms_consent="opted_out")  # already out: no event
    receiver = hook(["customer.opted_out", "import.finished"])
    people = (
        "customer_id,first_name,last_name,phone,store,sms_consent,sms_consent_date\n"
        "C1,Ann,Lee,202-555-0142,Downtown,no,2025-06-01\n"
        "C2,Bob,Ray,202-555-0143,Downtown,no,2025-06-01\n"
        "C3,Cat,Kim,202-555-0144,Downtown,no,\n"
    )
    path = tmp_path / "people.csv"
    path.write_text(people)
    assert runner.invoke(args=["import", "customers", str(path)]).exit_code == 0
    run = db.session.scalar(select(ImportRun).order_by(ImportRun.id.desc()))
    cat = db.session.scalar(select(Customer).where(Customer.external_id == "C3"))
    events = received(receiver)
    assert [e["type"] for e in events] == ["customer.opted_out", "customer.opted_out", "import.finished"]
    assert sorted((e["data"] for e in events[:2]), key=lambda d: d["external_id"]) == [
        {"customer_id": ann.id, "external_id": "C1", "source": "import", "import_id": run.id},
        {"customer_id": cat.id, "external_id": "C3", "source": "import", "import_id": run.id},
    ]
    assert events[2]["data"]["kind"] == "customers" and events[2]["data"]["status"] == "done"


# --- how deliveries are queued ------------------------------------------------------------------------


def test_many_events_to_one_endpoint_are_sent_in_order_by_few_jobs(app, db, hook, monkeypatch):
    from portal.models import Job

    receiver = hook(["customer.opted_out"])
    monkeypatch.setattr(webhooks_out.delivery, "PER_JOB", 2)
    events = [("customer.opted_out", {"customer_id": i, "external_id": f"C{i}", "source": "staff"}) for i in range(5)]
    assert webhooks_out.notify(events) == 5
    assert [e["data"]["customer_id"] for e in received(receiver)] == [0, 1, 2, 3, 4]
    sent = db.session.scalars(select(Job).where(Job.func == "webhooks.deliver").order_by(Job.created_at)).all()
    ids = db.session.scalars(select(WebhookDelivery.id).order_by(WebhookDelivery.id)).all()
    assert [j.kwargs for j in sent] == [
        {"delivery_ids": ids[0:2]},
        {"delivery_ids": ids[2:4]},
        {"delivery_id": ids[4]},
    ]
    assert {j.status for j in sent} == {"done"}
    assert set(db.session.scalars(select(WebhookDelivery.status))) == {"delivered"}


def test_an_endpoint_that_does_not_answer_costs_one_attempt_per_job(app, db, client, login_as):
    import socket

    from portal.models import Job

    login_as("admin")
    with socket.socket() as probe:  # a port nobody listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    register(client, f"http://127.0.0.1:{port}/hook", ["customer.opted_out"])
    events = [("customer.opted_out", {"customer_id": i, "external_id": f"C{i}", "source": "staff"}) for i in range(3)]
    assert webhooks_out.notify(events) == 3
    first, *rest = db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
    assert (first.status, first.attempts, first.last_status_code) == ("retrying", 1, None) and first.last_error
    assert [(d.status, d.attempts) for d in rest] == [("retrying", 0), ("retrying", 0)]
    assert all(d.next_attempt_at is not None and "not tried" in d.last_error for d in rest)
    retries = db.session.scalars(select(Job.kwargs).where(Job.func == "webhooks.deliver", Job.status == "scheduled"))
    assert sorted(k["delivery_id"] for k in retries) == [first.id, *(d.id for d in rest)]
