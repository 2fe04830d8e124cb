"""Tokens: bearer only (no session cookie), revocation/expiry/deactivation at once, the user's store scope."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from portal.models import ApiToken, AuditEntry
from portal.services import api_tokens
from tests.conftest import login


def test_no_token_is_a_json_401_and_a_session_cookie_is_not_accepted(app, client, make_user, make_customer):
    user = make_user("admin")
    make_customer()
    assert login(client, user.email).status_code == 302
    assert client.get("/customers").status_code == 200  # the browser session works on the pages
    response = client.get("/api/v1/customers")  # the same client sends its session cookie
    assert response.status_code == 401
    assert response.is_json and "Bearer" in response.json["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Set-Cookie" not in response.headers  # the API neither reads nor rewrites the session
    assert client.get("/customers").status_code == 200  # and the browser stays logged in


def test_a_token_works_without_csrf_and_is_hashed_at_rest(app, db, api_as, make_customer):
    api = api_as("admin")
    customer = make_customer()
    response = api.post(f"/api/v1/customers/{customer.id}/consent", json={"status": "opted_out"})
    assert response.status_code == 200, response.json
    assert response.json["consent"]["status"] == "opted_out"
    stored = db.session.get(ApiToken, api.token.id)
    assert stored.token_hash == api_tokens.hash_secret(api.secret) and api.secret not in stored.token_hash
    assert stored.last_used_at is not None
    assert db.session.query(AuditEntry).filter_by(action="api_token.create").count() == 1


def test_revocation_takes_effect_on_the_next_request(app, db, api_as):
    api = api_as("admin")
    assert api.get("/api/v1/customers").status_code == 200
    api_tokens.revoke(db.session.get(ApiToken, api.token.id), api.user)
    response = api.get("/api/v1/customers")
    assert response.status_code == 401 and "revoked" in response.json["message"]
    assert db.session.query(AuditEntry).filter_by(action="api_token.revoke").count() == 1


def test_expiry_and_deactivation_take_effect_at_once(app, db, api_as, make_user, make_token):
    api = api_as("admin")
    assert api.get("/api/v1/models").status_code == 200
    token = db.session.get(ApiToken, api.token.id)
    token.expires_at = datetime.now(timezone.utc) - timedelta(seconds=1)
    db.session.commit()
    assert api.get("/api/v1/models").status_code == 401

    other = api_as("admin", email="second@example.com")
    assert other.get("/api/v1/models").status_code == 200
    other.user.active = False
    db.session.commit()
    assert other.get("/api/v1/models").status_code == 401


def test_a_wrong_or_malformed_token_is_401(app, api_as):
    api = api_as("admin")
    for header in ("Bearer nope", "Basic abc", "Bearer", "bearer " + api.secret + "x", "Token " + api.secret):
        response = api.client.get("/api/v1/customers", headers={"Authorization": header})
        assert response.status_code == 401 and response.is_json, header
    assert api.client.get("/api/v1/customers", headers={"Authorization": "bearer " + api.secret}).status_code == 200


def test_a_managers_token_sees_only_their_stores_customers(app, db, api_as, make_store, make_customer):
    home, other = make_store("Home"), make_store("Other")
    mine = make_customer(store=home)
    theirs = make_customer(store=other)
    api = api_as("manager", store=home)
    assert api.get(f"/api/v1/customers/{mine.id}").status_code == 200
    response = api.get(f"/api/v1/customers/{theirs.id}")
    assert response.status_code == 404 and response.is_json
    listed = api.get("/api/v1/customers?limit=500").json["items"]
    assert [c["id"] for c in listed] == [mine.id]
    assert api.post(f"/api/v1/customers/{theirs.id}/consent", json={"status": "opted_out"}).status_code == 404
    assert api.delete(f"/api/v1/customers/{mine.id}").status_code == 403  # erasure: admins only, as on the page
    admin = api_as("admin")
    assert {c["id"] for c in admin.get("/api/v1/customers").json["items"]} == {mine.id, theirs.id}


def test_list_filters_and_keyset_pages_match_the_list_page(app, db, api_as, make_store, make_customer):
    store = make_store("Home")
    made = [make_customer(store=store, tier="Gold" if i % 2 else None) for i in range(7)]
    api = api_as("admin")
    gold = api.get("/api/v1/customers?tier=Gold").json["items"]
    assert {c["id"] for c in gold} == {c.id for c in made if c.tier == "Gold"}
    seen, after = [], None
    while True:
        url = "/api/v1/customers?limit=3" + (f"&after={after}" if after else "")
        page = api.get(url).json
        seen += [c["id"] for c in page["items"]]
        after = page["next_after"]
        if not after:
            break
    assert seen == sorted(c.id for c in made)
    bad = api.get("/api/v1/customers?after=%5B1%2C%22x%22%5D")
    assert bad.status_code == 422 and bad.is_json
    assert api.get("/api/v1/customers?band=Purple").status_code == 422
    assert api.get("/api/v1/customers?limit=0").status_code == 422
    assert api.get("/api/v1/customers?nonsense=1").status_code == 422


def test_errors_are_json_never_html(app, api_as):
    api = api_as("admin")
    for path, status in (("/api/v1/nothing", 404), ("/api/v1/customers/999999", 404)):
        response = api.get(path)
        assert response.status_code == status and response.is_json and response.json["message"]
    response = api.client.put("/api/v1/customers", headers={"Authorization": f"Bearer {api.secret}"})
    assert response.status_code == 405 and response.is_json
    response = api.post("/api/v1/customers", data="not json", headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422) and response.is_json


def test_rate_limit_is_per_token_and_answers_429_in_json(app, api_as):
    first, second = api_as("admin"), api_as("admin", email="other-admin@example.com")
    app.config["API_RATE_LIMIT"] = "3 per minute"
    try:
        codes = [first.get("/api/v1/models").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        response = first.get("/api/v1/models")
        assert response.is_json and "Too many" in response.json["message"]
        assert int(response.headers["Retry-After"]) > 0 and response.headers["X-RateLimit-Remaining"] == "0"
        assert second.get("/api/v1/models").status_code == 200  # another token has its own allowance
    finally:
        app.config["API_RATE_LIMIT"] = "600 per minute"


def test_openapi_document_and_reference_page_need_no_token(app, client):
    spec = client.get("/api/v1/openapi.json").json
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "/api/v1/purchases" in spec["paths"] and "/api/v1/coupons/{code}/redeem" in spec["paths"]
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and b"POST /api/v1/purchases" in page.data and b"Idempotency-Key" in page.data
    assert b"cdn" not in page.data.lower() and b"<script" not in page.data


def test_text_no_database_can_store_is_a_422_not_a_500(app, api_as):
    api = api_as("admin")
    for body in ('{"external_id": "a\\u0000b"}', '{"external_id": "a\\ud8beb"}'):
        response = api.post("/api/v1/customers", data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422 and response.is_json, body
    too_big = api.get("/api/v1/customers/99999999999999999999")
    assert too_big.status_code == 404 and too_big.is_json
