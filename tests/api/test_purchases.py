"""POST /api/v1/purchases: the importer's rules, all or nothing, idempotent replays."""

from __future__ import annotations

from sqlalchemy import func, select

from portal.models import Customer, ImportRun, PurchaseLine
from tests.api.conftest import line


def _count(db, model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_a_valid_batch_is_written_and_listed_as_an_api_import(app, db, api_as, make_store):
    store = make_store("Home")
    api = api_as("manager", store=store)
    lines = [line("C1", "T1", "P1"), line("C1", "T1", "P2", qty=2, price=4.5), line(None, "T2", "P1")]
    response = api.post("/api/v1/purchases", json={"lines": lines}, headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["accepted"] == 3 and body["new"] == 3 and body["customers_new"] == 1
    assert _count(db, PurchaseLine) == 3
    run = db.session.get(ImportRun, body["import_id"])
    assert run.source == "api" and run.status == "done" and run.user_email == api.user.email
    customer = db.session.scalar(select(Customer).where(Customer.external_id == "C1"))
    assert customer.store_id == store.id and customer.monetary is not None and float(customer.monetary) == 19.0


def test_a_replay_with_the_same_key_returns_the_first_answer_and_writes_nothing(app, db, api_as):
    api = api_as("admin")
    batch = {"lines": [line("C1", "T1", "P1"), line("C2", "T2", "P1")]}
    first = api.post("/api/v1/purchases", json=batch, headers={"Idempotency-Key": "same"})
    assert first.status_code == 200
    runs, lines = _count(db, ImportRun), _count(db, PurchaseLine)
    again = api.post("/api/v1/purchases", json=batch, headers={"Idempotency-Key": "same"})
    assert again.status_code == 200 and again.json == first.json
    assert (_count(db, ImportRun), _count(db, PurchaseLine)) == (runs, lines)
    other = api.post("/api/v1/purchases", json={"lines": [line("C3", "T3", "P1")]}, headers={"Idempotency-Key": "same"})
    assert other.status_code == 409 and "different batch" in other.json["message"]
    assert _count(db, PurchaseLine) == lines
    # A new key with the same lines is a new request: the natural key keeps the lines from doubling.
    fresh = api.post("/api/v1/purchases", json=batch, headers={"Idempotency-Key": "new-key"})
    assert fresh.status_code == 200 and fresh.json["new"] == 0 and fresh.json["duplicates"] == 2
    assert _count(db, PurchaseLine) == lines


def test_row_errors_are_a_422_listing_each_problem_and_nothing_is_written(app, db, api_as, make_store):
    make_store("Home")
    api = api_as("admin")
    lines = [
        line("C1", "T1", "P1"),
        line("C2", "T2", "P1", date="not a date"),
        line("C3", "T3", "P1", price=-5.0),
        line("C4", "T4", "P1", date="2099-01-01T10:00:00"),
        line("C5", "T5", "P1", store="Nowhere"),
    ]
    response = api.post("/api/v1/purchases", json={"lines": lines}, headers={"Idempotency-Key": "bad"})
    assert response.status_code == 422, response.json
    problems = response.json["errors"]["lines"]
    by_row = {p["row"]: p for p in problems}
    assert set(by_row) == {1, 2, 3, 4}
    assert by_row[1]["column"] == "purchase_date" and by_row[1]["reason"]
    assert by_row[3]["column"] == "purchase_date" and "future" in by_row[3]["reason"]
    assert by_row[4]["column"] == "store" and "unknown store" in by_row[4]["reason"]
    assert "4 of 5 lines" in response.json["message"]
    assert _count(db, PurchaseLine) == 0 and _count(db, ImportRun) == 0 and _count(db, Customer) == 0
    # The key was not used up by a refused batch: the corrected batch goes through under it.
    fixed = api.post("/api/v1/purchases", json={"lines": lines[:1]}, headers={"Idempotency-Key": "bad"})
    assert fixed.status_code == 200 and _count(db, PurchaseLine) == 1


def test_a_manager_cannot_write_lines_for_another_store(app, db, api_as, make_store):
    home = make_store("Home")
    make_store("Other")
    api = api_as("manager", store=home)
    response = api.post("/api/v1/purchases", json={"lines": [line(store="Other")]}, headers={"Idempotency-Key": "x"})
    assert response.status_code == 422
    assert "only into your store" in response.json["errors"]["lines"][0]["reason"]
    assert _count(db, PurchaseLine) == 0


def test_the_batch_shape_is_checked(app, db, api_as):
    api = api_as("admin")
    no_key = api.post("/api/v1/purchases", json={"lines": [line()]})
    assert no_key.status_code == 422 and "Idempotency-Key" in str(no_key.json["errors"])
    too_many = api.post(
        "/api/v1/purchases", json={"lines": [line(txn=f"T{i}") for i in range(5001)]}, headers={"Idempotency-Key": "m"}
    )
    assert too_many.status_code == 422
    empty = api.post("/api/v1/purchases", json={"lines": []}, headers={"Idempotency-Key": "e"})
    assert empty.status_code == 422
    missing = api.post("/api/v1/purchases", json={"lines": [{"customer_id": "C1"}]}, headers={"Idempotency-Key": "f"})
    assert missing.status_code == 422 and "transaction_id" in str(missing.json["errors"])
    marketer = api_as("marketer", email="m@example.com")
    refused = marketer.post("/api/v1/purchases", json={"lines": [line()]}, headers={"Idempotency-Key": "g"})
    assert refused.status_code == 403 and _count(db, PurchaseLine) == 0
