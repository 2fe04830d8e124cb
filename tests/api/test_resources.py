"""Customers (detail, upsert, consent, erasure), coupons, segments, campaigns, bundles and models over the API."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update

from portal.models import AuditEntry, ConsentEvent, Customer, OutboxMessage
from portal.services.campaigns import campaigns
from portal.services.lists import segments


def test_customer_detail_has_the_customer_pages_picture(app, db, api_as, make_store, make_customer):
    store = make_store("Home")
    customer = make_customer(
        store=store,
        tier="Gold",
        churn_band="High",
        churn_probability=0.81,
        churn_reasons=["No purchase for 200 days"],
        lifecycle="At risk",
        frequency=4,
        monetary=120,
        recency=200,
        p_alive=0.3,
        clv_12m=55,
        scored_at=datetime.now(timezone.utc),
    )
    body = admin_get(api_as, f"/api/v1/customers/{customer.id}")
    assert body["external_id"] == customer.external_id and body["store"] == "Home"
    assert body["tier_detail"]["tier"] == "Gold" and body["tier_detail"]["reward"]
    assert body["churn"] == {
        "probability": 0.81,
        "band": "High",
        "reasons": ["No purchase for 200 days"],
        "action": body["churn"]["action"],
    }
    assert body["churn"]["action"]
    assert body["lifecycle_detail"]["status"] == "At risk" and body["lifecycle_detail"]["meaning"]
    assert body["value"]["clv_12m"] == "55.00" and body["features"]["frequency"] == 4


def admin_get(api_as, path):
    api = api_as("admin", email=f"reader{abs(hash(path)) % 10000}@example.com")
    response = api.get(path)
    assert response.status_code == 200, response.json
    return response.json


def test_upsert_creates_then_updates_by_external_id_with_consent(app, db, api_as, make_store):
    store = make_store("Home")
    api = api_as("manager", store=store)
    given = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc).isoformat()
    created = api.post(
        "/api/v1/customers",
        json={
            "external_id": "POS-77",
            "name": "Ann Lee",
            "phone": "(202) 555-0143",
            "consent": {"status": "opted_in", "source": "signed form at the till", "effective_at": given},
        },
    )
    assert created.status_code == 201, created.json
    body = created.json["customer"]
    assert body["phone"] == "+12025550143" and body["store"] == "Home"
    assert body["consent"]["status"] == "opted_in" and body["consent"]["source"] == "signed form at the till"
    event = db.session.scalar(select(ConsentEvent))
    assert event.source == "signed form at the till" and event.effective_at.isoformat().startswith("2026-05-01")
    updated = api.post("/api/v1/customers", json={"external_id": "POS-77", "email": "ann@example.com"})
    assert updated.status_code == 200 and updated.json["created"] is False
    assert updated.json["customer"]["name"] == "Ann Lee" and updated.json["customer"]["email"] == "ann@example.com"
    bad = api.post("/api/v1/customers", json={"external_id": "POS-78", "phone": "12"})
    assert bad.status_code == 422 and "phone" in bad.json["errors"]
    assert db.session.scalar(select(Customer).where(Customer.external_id == "POS-78")) is None


def test_a_manager_cannot_change_another_stores_customer(app, db, api_as, make_store, make_customer):
    home, other = make_store("Home"), make_store("Other")
    theirs = make_customer(store=other, name="Bob Day")
    api = api_as("manager", store=home)
    response = api.post("/api/v1/customers", json={"external_id": theirs.external_id, "name": "Changed"})
    assert response.status_code == 409 and "another store" in response.json["message"]
    db.session.refresh(theirs)
    assert theirs.name == "Bob Day"
    assert api.post("/api/v1/customers", json={"external_id": "N1", "store": "Other"}).status_code == 403


def test_erasure_through_the_api_is_the_pages_erasure(app, db, api_as, make_customer):
    customer = make_customer(name="Ann Lee", email="ann@example.com")
    api = api_as("admin")
    response = api.delete(f"/api/v1/customers/{customer.id}")
    assert response.status_code == 200 and response.json["erased"] is True
    db.session.refresh(customer)
    assert customer.erased_at and customer.name is None and customer.phone is None
    assert customer.external_id.startswith("erased-")
    assert (
        db.session.scalar(select(AuditEntry).where(AuditEntry.action == "customer.erase")).user_email == api.user.email
    )
    assert api.get(f"/api/v1/customers/{customer.id}").status_code == 404
    assert api.delete(f"/api/v1/customers/{customer.id}").status_code == 404


def test_a_till_redeems_a_coupon_once(app, db, api_as, make_store, make_customer):
    store = make_store("Home")
    ann = make_customer(
        store=store,
        name="Ann Lee",
        sms_consent="opted_in",
        sms_consent_at=datetime.now(timezone.utc) - timedelta(days=30),
    )
    campaign = campaigns.create_campaign(
        "Spring",
        {},
        "Hi {first_name}, code {code}",
        control_share=0,
        expires_at=datetime.now(timezone.utc) + timedelta(days=10),
    )
    db.session.execute(
        update(OutboxMessage).values(status="dry-run", sent_at=datetime.now(timezone.utc) - timedelta(hours=1))
    )
    db.session.commit()
    code = db.session.scalar(select(OutboxMessage.coupon_code))
    api = api_as("manager", store=store)
    first = api.post(f"/api/v1/coupons/{code.lower()}/redeem", json={"external_id": ann.external_id})
    assert first.status_code == 200, first.json
    assert first.json["campaign_id"] == campaign.id and first.json["customer_id"] == ann.id
    again = api.post(f"/api/v1/coupons/{code}/redeem", json={"customer_id": ann.id})
    assert again.status_code == 409 and "already" in again.json["message"]
    unknown = api.post("/api/v1/coupons/NOPE1234/redeem", json={"customer_id": ann.id})
    assert unknown.status_code == 409
    neither = api.post(f"/api/v1/coupons/{code}/redeem", json={})
    assert neither.status_code == 422
    other = api_as("manager", store=make_store("Other"), email="other@example.com")
    assert other.post(f"/api/v1/coupons/{code}/redeem", json={"customer_id": ann.id}).status_code == 404
    # the campaign list and results, scoped like the pages: a chain-wide campaign is the admins'
    assert api.get("/api/v1/campaigns").json["items"] == []
    assert api.get(f"/api/v1/campaigns/{campaign.id}/results").status_code == 404
    admin = api_as("admin")
    assert admin.get("/api/v1/campaigns").json["items"][0]["id"] == campaign.id
    results = admin.get(f"/api/v1/campaigns/{campaign.id}/results")
    assert results.status_code == 200 and results.json["status_counts"]["dry-run"] == 1
    assert admin.get("/api/v1/campaigns/999999/results").status_code == 404


def test_segments_list_and_their_customers_in_the_users_scope(app, db, api_as, make_store, make_customer):
    home, other = make_store("Home"), make_store("Other")
    gold = make_customer(store=home, tier="Gold")
    make_customer(store=home, tier="Silver")
    make_customer(store=other, tier="Gold")
    api = api_as("manager", store=home)
    segment = segments.create("Gold ones", "customers", "tier=Gold", api.user)
    listed = api.get("/api/v1/segments").json["items"]
    assert [s["id"] for s in listed] == [segment.id] and listed[0]["filter"] == "tier=Gold"
    members = api.get(f"/api/v1/segments/{segment.id}/customers").json["items"]
    assert [m["id"] for m in members] == [gold.id]
    outsider = api_as("manager", store=other, email="o@example.com")
    assert outsider.get(f"/api/v1/segments/{segment.id}/customers").status_code == 404
    assert outsider.get("/api/v1/segments").json["items"] == []


def test_bundles_and_models_answer_before_anything_is_trained(app, api_as):
    api = api_as("marketer")
    assert api.get("/api/v1/bundles").json == {"items": [], "next_after": None}
    models = api.get("/api/v1/models").json["items"]
    assert {m["name"] for m in models} >= {"segmentation", "churn", "clv", "bundles"}
    assert not any(m["trained"] for m in models)
