"""/account/tokens: create (shown once), list, revoke; admins manage anyone's; others get a 404."""

from __future__ import annotations

import re

from portal.models import ApiToken
from tests.conftest import csrf_token, post_form


def test_a_user_creates_a_token_sees_it_once_uses_it_and_revokes_it(app, db, client, login_as):
    user = login_as("manager")
    response = post_form(client, "/account/tokens", {"name": "Till 3", "days": "30"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    secret = re.search(r'id="token-secret".*?<code[^>]*>([^<]+)</code>', html, re.S).group(1)
    assert secret.startswith("lyl_")
    listing = client.get("/account/tokens").get_data(as_text=True)
    assert "Till 3" in listing and secret not in listing  # shown once only
    token = db.session.query(ApiToken).one()
    assert token.user_id == user.id and token.expires_at is not None
    api = app.test_client()
    assert api.get("/api/v1/customers", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    revoked = client.post(
        f"/account/tokens/{token.id}/revoke", data={"csrf_token": csrf_token(client, "/account/tokens")}
    )
    assert revoked.status_code == 302
    assert api.get("/api/v1/customers", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_admins_manage_anyones_tokens_and_others_cannot(app, db, client, login_as, make_user, make_store):
    other = make_user("marketer", email="mk@example.com")
    login_as("admin")
    response = post_form(client, f"/account/tokens?user={other.id}", {"name": "CRM", "days": ""})
    assert response.status_code == 200 and "lyl_" in response.get_data(as_text=True)
    token = db.session.query(ApiToken).one()
    assert token.user_id == other.id and token.expires_at is None and token.created_by == "admin@example.com"
    users_page = client.get("/users").get_data(as_text=True)
    assert f"/account/tokens?user={other.id}" in users_page

    client.post("/logout", data={"csrf_token": csrf_token(client, "/account/tokens")})
    login_as("manager", store=make_store("Shop"))
    assert client.get(f"/account/tokens?user={other.id}").status_code == 404
    assert (
        client.post(
            f"/account/tokens/{token.id}/revoke", data={"csrf_token": csrf_token(client, "/account/tokens")}
        ).status_code
        == 404
    )
    db.session.refresh(token)
    assert token.revoked_at is None
