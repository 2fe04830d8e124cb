"""Login, logout, throttling, safe redirects, passwords and CSRF."""
from sqlalchemy import select

from portal.models import AuditEntry, LoginAttempt, User
from tests.conftest import PASSWORD, csrf_token, login, post_form


def test_login_then_dashboard_then_logout(client, make_user):
    user = make_user("manager")
    response = login(client, user.email)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "Dashboard" in client.get("/").get_data(as_text=True)
    post_form(client, "/logout", {}, token_from="/")
    assert client.get("/").status_code == 302


def test_wrong_password_is_refused_with_message(client, make_user):
    user = make_user("admin")
    response = login(client, user.email, "not-the-password")
    assert response.status_code == 401
    assert "Wrong e-mail or password" in response.get_data(as_text=True)


def test_inactive_user_cannot_log_in(client, make_user):
    user = make_user("admin", active=False)
    assert login(client, user.email).status_code == 401


def test_login_is_throttled_per_account_and_expires(client, make_user, db):
    user = make_user("admin")
    for _ in range(5):
        assert login(client, user.email, "wrong-wrong").status_code == 401
    response = login(client, user.email)  # even the right password waits
    assert response.status_code == 429
    assert "Too many failed attempts" in response.get_data(as_text=True)
    # The lock is a sliding window, not forever: once the failures age out the user gets in.
    from datetime import datetime, timedelta, timezone

    for attempt in db.session.scalars(select(LoginAttempt)):
        attempt.at = datetime.now(timezone.utc) - timedelta(minutes=16)
    db.session.commit()
    assert login(client, user.email).status_code == 302


def test_login_throttled_per_address(client, make_user):
    for i in range(20):
        login(client, f"nobody{i}@example.com", "wrong-wrong")
    user = make_user("admin")
    assert login(client, user.email).status_code == 429


def test_next_accepts_only_local_paths(client, make_user):
    user = make_user("admin")
    token = csrf_token(client, "/login")
    for evil in ("https://evil.example/x", "//evil.example", "/\\evil.example", "javascript:alert(1)"):
        response = client.post("/login", data={"email": user.email, "password": PASSWORD, "next": evil,
                                               "csrf_token": token})
        assert response.headers["Location"] == "/", evil
        post_form(client, "/logout", {}, token_from="/")
        token = csrf_token(client, "/login")
    response = client.post("/login", data={"email": user.email, "password": PASSWORD, "next": "/customers?q=1",
                                           "csrf_token": token})
    assert response.headers["Location"] == "/customers?q=1"


def test_post_without_csrf_token_is_refused(client, make_user):
    user = make_user("admin")
    response = client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


def test_passwords_are_hashed_with_scrypt(make_user):
    user = make_user("admin")
    assert PASSWORD not in user.password_hash and user.password_hash.startswith("scrypt:")


def test_change_own_password_is_audited(client, login_as, db):
    user = login_as("marketer")
    bad = post_form(client, "/account/password", {"current": "nope", "new": "another-long-pass",
                                                  "confirm": "another-long-pass"})
    assert "Current password is wrong" in bad.get_data(as_text=True)
    ok = post_form(client, "/account/password", {"current": PASSWORD, "new": "another-long-pass",
                                                 "confirm": "another-long-pass"})
    assert ok.status_code == 302
    db.session.refresh(user)
    assert user.check_password("another-long-pass")
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "user.password_change"))


def test_session_cookie_flags(client, make_user):
    user = make_user("admin")
    response = login(client, user.email)
    cookie = response.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_security_headers(client):
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
