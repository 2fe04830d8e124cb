"""The incremental rescore of a few customers equals a full rescore for them (same code path)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from portal.models import Customer, Job, RescoreQueue
from portal.services import settings as settings_service
from portal.services.scores import aggregates, incremental, scoring, training
from portal.services.scores import store as score_store
from tests.api.conftest import line
from tests.conftest import synthetic_lines

COLUMNS = [
    "tier",
    "churn_band",
    "churn_reasons",
    "lifecycle",
    "frequency",
    "recency",
    "store_visit_frequency",
    "active_days",
    "num_unique_products",
    "first_purchase_at",
    "last_purchase_at",
    "monetary",
    "spend_12m",
    "total_quantity",
    "avg_price_per_unit",
    "avg_purchase_gap_days",
    "churn_probability",
    "churn_priority",
    "p_alive",
    "expected_purchases_90d",
    "clv_12m",
]
EXACT = COLUMNS[:11]


def _scores(db, ids) -> pd.DataFrame:
    rows = db.session.execute(
        select(Customer.id, *(getattr(Customer, c) for c in COLUMNS)).where(Customer.id.in_(ids))
    ).all()
    frame = pd.DataFrame(rows, columns=["id", *COLUMNS]).set_index("id").sort_index()
    for col in ("monetary", "spend_12m", "clv_12m"):
        frame[col] = frame[col].astype(float)
    return frame


def test_incremental_rescore_equals_a_full_rescore_for_the_touched_customers(app, db, seed_lines, api_as):
    store = seed_lines(synthetic_lines(n_customers=150, days=700, seed=11))
    settings_service.update({"tiers.bar": "fixed", "tier.min_frequency": "3", "tier.min_monetary": "300"})
    training.train_all()
    scoring.rescore_all(reason="baseline")
    api = api_as("admin")
    app.config["API_RESCORE"] = False  # the test calls the incremental rescore itself, then a full one
    try:
        lines = [
            line("C0003", "API-1", "P001", "2026-10-30T09:00:00", 3, 40.0, store=store.name),
            line("C0003", "API-1", "P002", "2026-10-30T09:00:00", 1, 12.5, store=store.name),
            line("C0010", "API-2", "P005", "2026-10-20T18:30:00", 5, 80.0, store=store.name),
            line("C0042", "API-3", "P001", "2026-09-15T12:00:00", 2, 40.0, store=store.name),
            line("NEW-1", "API-4", "P003", "2026-10-29T12:00:00", 1, 25.0, store=store.name),
        ]
        response = api.post("/api/v1/purchases", json={"lines": lines}, headers={"Idempotency-Key": "inc-1"})
        assert response.status_code == 200, response.json
    finally:
        app.config["API_RESCORE"] = True
    ids = list(
        db.session.scalars(select(Customer.id).where(Customer.external_id.in_(["C0003", "C0010", "C0042", "NEW-1"])))
    )
    before = _scores(db, ids)
    result = incremental.rescore_customers(ids)
    assert result["scored"] == 4
    after_incremental = _scores(db, ids)
    assert after_incremental["frequency"].notna().all()
    assert not after_incremental[EXACT].equals(before[EXACT])  # the new lines did change their scores

    scoring.rescore_all(reason="full")
    after_full = _scores(db, ids)
    pd.testing.assert_frame_equal(after_incremental[EXACT], after_full[EXACT])
    close = [c for c in COLUMNS if c not in EXACT]
    pd.testing.assert_frame_equal(after_incremental[close], after_full[close], check_exact=False, rtol=1e-9, atol=1e-9)
    assert after_full["churn_probability"].notna().all() and after_full["clv_12m"].notna().all()
    assert after_full["tier"].notna().any()


def test_a_batch_through_the_api_queues_its_customers_and_the_job_rescores_them(app, db, seed_lines, api_as):
    store = seed_lines(synthetic_lines(n_customers=80, days=600, seed=5))
    training.train_all()
    api = api_as("admin")
    response = api.post(
        "/api/v1/purchases",
        json={"lines": [line("C0001", "API-9", "P001", "2026-10-31T10:00:00", 10, 50.0, store=store.name)]},
        headers={"Idempotency-Key": "inc-2"},
    )
    assert response.status_code == 200, response.json
    # Tests run jobs inline, so the draining job has run by the time the answer is written.
    assert response.json["rescore"] == {"customers": 1, "status": "done", "mode": "incremental"}
    assert incremental.queued() == 0
    customer = db.session.scalar(select(Customer).where(Customer.external_id == "C0001"))
    db.session.refresh(customer)
    assert customer.recency == 0 and customer.last_purchase_at.date().isoformat() == "2026-10-31"
    assert customer.churn_probability is not None


def test_the_reference_moment_by_index_seeks_equals_the_full_scans(app, db, seed_lines, make_store):
    assert incremental.reference_moment() is None
    seed_lines(synthetic_lines(n_customers=20, days=200, seed=2))
    frame = synthetic_lines(n_customers=5, days=100, seed=9, end="2026-11-20")
    frame["customer_id"] = "X" + frame["customer_id"]
    frame["transaction_id"] = "X" + frame["transaction_id"]
    frame["product_id"] = "X" + frame["product_id"]
    seed_lines(frame, store=make_store("Second"))
    assert incremental.reference_moment() == aggregates.reference_moment()
    assert incremental.reference_moment() > pd.Timestamp("2026-10-31 23:59")  # the second store's lines are later


def test_transitions_name_tier_moves_new_high_risk_and_newly_lost_customers():
    old_state = {1: ("C1", "Low", "Active"), 2: ("C2", "High", "At risk"), 3: ("C3", "Medium", "Lapsing")}
    rows = [
        {"id": 1, "churn_band": "High", "churn_probability": 0.8, "lifecycle": "At risk"},
        {"id": 2, "churn_band": "High", "churn_probability": 0.9, "lifecycle": "Lost"},
        {"id": 3, "churn_band": "Medium", "churn_probability": 0.5, "lifecycle": "Lapsing"},
    ]
    changes = [{"customer_id": 3, "old_tier": "Gold", "new_tier": "Silver", "reason": "rescored"}]
    events = score_store.transitions(rows, changes, old_state)
    assert ("customer.high_risk", {"customer_id": 1, "external_id": "C1", "churn_probability": 0.8}) in events
    assert ("customer.lost", {"customer_id": 2, "external_id": "C2"}) in events
    assert [e for e, _ in events].count("customer.high_risk") == 1  # C2 was High already
    tier = [data for e, data in events if e == "customer.tier_changed"]
    assert tier == [
        {"customer_id": 3, "external_id": "C3", "old_tier": "Gold", "new_tier": "Silver", "reason": "rescored"}
    ]


def _queue_rows(db) -> dict[int, object]:
    return dict(db.session.execute(select(RescoreQueue.customer_id, RescoreQueue.queued_at)).all())


def test_batches_arriving_while_a_job_waits_join_it_and_one_drain_rescores_them_all(app, db, seed_lines):
    seed_lines(synthetic_lines(n_customers=30, days=400, seed=4))
    training.train_all()
    scoring.rescore_all()
    ids = list(db.session.scalars(select(Customer.id).order_by(Customer.id)))
    db.session.execute(Customer.__table__.update().where(Customer.id.in_(ids[:6])).values(churn_probability=None))
    db.session.add(Job(id="waiting", func=incremental.QUEUE_JOB, title="queued", status="queued", kwargs={}))
    db.session.commit()
    assert incremental.queue(ids[:4]) == 4
    assert incremental.queue(ids[2:6]) == 4  # two of them again: still one row each
    assert db.session.scalar(select(db.func.count()).select_from(Job)) == 1  # the waiting job takes them all
    assert sorted(_queue_rows(db)) == ids[:6]
    out = incremental.drain()
    assert out["customers"] == 6 and out["passes"] == 1 and incremental.queued() == 0
    scores = db.session.scalars(select(Customer.churn_probability).where(Customer.id.in_(ids[:6]))).all()
    assert all(p is not None for p in scores)


def test_a_customer_queued_again_during_a_rescore_is_rescored_by_the_next_pass(app, db, seed_lines, monkeypatch):
    seed_lines(synthetic_lines(n_customers=20, days=300, seed=6))
    training.train_all()
    ids = list(db.session.scalars(select(Customer.id).order_by(Customer.id)))[:3]
    db.session.add(Job(id="waiting", func=incremental.QUEUE_JOB, title="queued", status="queued", kwargs={}))
    db.session.commit()
    incremental.queue(ids)
    real, calls = incremental.rescore_customers, []

    def rescore_while_a_batch_arrives(customer_ids, reason="x"):
        calls.append(sorted(customer_ids))
        out = real(customer_ids, reason)
        if len(calls) == 1:  # a new batch names the first customer while this pass runs
            incremental.queue([ids[0]])
        return out

    monkeypatch.setattr(incremental, "rescore_customers", rescore_while_a_batch_arrives)
    out = incremental.drain()
    assert calls == [sorted(ids), [ids[0]]] and out["passes"] == 2
    assert incremental.queued() == 0
