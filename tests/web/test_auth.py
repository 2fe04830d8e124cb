"""Login, logout, throttling, safe redirects, passwords and CSRF."""

from sqlalchemy import select

from portal.models import AuditEntry, LoginAttempt
from tests.conftest import PASSWORD, csrf_token, login, post_form
from tests.web.test_sessions import Browser


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


def test_made_up_emails_from_an_address_do_not_lock_real_users_out(client, make_user):
    for i in range(25):
        assert login(client, f"nobody{i}@example.com", "wrong-wrong").status_code == 401
    user = make_user("admin")
    assert login(client, user.email).status_code == 302


def _login_from(app, address: str, email: str, password: str = PASSWORD):
    """A fresh browser at ``address`` logging in through the form."""
    return post_form(Browser(app, address), "/login", {"email": email, "password": password})


def test_failures_from_one_address_do_not_stop_the_user_at_another(app, make_user):
    user = make_user("manager")
    for _ in range(5):
        assert _login_from(app, "203.0.113.9", user.email, "wrong-wrong").status_code == 401
    assert _login_from(app, "203.0.113.9", user.email).status_code == 429  # the attacker's address waits
    assert _login_from(app, "198.51.100.20", user.email).status_code == 302  # the user elsewhere does not


def test_throttle_is_a_progressive_delay_not_a_lock(client, make_user, db):
    from datetime import datetime, timedelta, timezone

    from portal.services import accounts

    user = make_user("admin")
    for _ in range(5):
        login(client, user.email, "wrong-wrong")
    now = datetime.now(timezone.utc)
    assert 0 < accounts.throttle_wait(user.email, "127.0.0.1", now) <= 30
    assert accounts.throttle_wait(user.email, "127.0.0.1", now + timedelta(seconds=31)) == 0
    db.session.add(accounts.LoginAttempt(email=user.email, address="127.0.0.1", success=False, at=now))
    db.session.commit()
    assert 30 < accounts.throttle_wait(user.email, "127.0.0.1", now) <= 60  # one more failure: twice as long
    response = login(client, user.email)
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 30


def test_a_flood_of_failures_on_one_account_spares_addresses_the_user_logged_in_from(app, make_user, db):
    from datetime import datetime, timezone

    user = make_user("manager")
    db.session.add(
        LoginAttempt(email=user.email, address="192.0.2.50", success=True, at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    )
    db.session.add_all(
        [LoginAttempt(email=user.email, address=f"10.0.{i // 250}.{i % 250}", success=False) for i in range(100)]
    )
    db.session.commit()
    assert _login_from(app, "203.0.113.80", user.email).status_code == 429  # a new address waits
    assert _login_from(app, "192.0.2.50", user.email).status_code == 302  # the user's usual one does not


def test_unknown_and_inactive_users_cost_one_password_check(client, make_user, monkeypatch):
    """Timing: every refused login runs one hash check of the same method, known e-mail or not."""
    import portal.models
    from portal.services import accounts

    checked = []
    real = accounts.check_password_hash

    def counting(pwhash, password):
        checked.append(pwhash.split("$")[0])
        return real(pwhash, password)

    monkeypatch.setattr(accounts, "check_password_hash", counting)
    monkeypatch.setattr(portal.models, "check_password_hash", counting)
    known = make_user("admin")
    inactive = make_user("marketer", active=False)
    method = known.password_hash.split("$")[0]
    for email in (known.email, "nobody@example.com", inactive.email):
        checked.clear()
        assert login(client, email, "wrong-wrong").status_code == 401
        assert checked == [method], email
    first = accounts._dummy_hash(method)
    assert accounts._dummy_hash(method) is first  # made once per process


def test_next_with_control_characters_is_ignored_not_a_500(client, make_user):
    user = make_user("admin")
    for evil in ("/customers\r\nSet-Cookie: x=1", "/\n/evil.example", "/x\ty"):
        token = csrf_token(client, "/login")
        response = client.post(
            "/login", data={"email": user.email, "password": PASSWORD, "next": evil, "csrf_token": token}
        )
        assert response.status_code == 302 and response.headers["Location"] == "/", repr(evil)
        post_form(client, "/logout", {}, token_from="/")
    response = client.get("/login?next=/customers%0d%0aX:1")
    assert response.status_code == 200


def test_next_accepts_only_local_paths(client, make_user):
    user = make_user("admin")
    token = csrf_token(client, "/login")
    for evil in ("https://evil.example/x", "//evil.example", "/\\evil.example", "javascript:alert(1)"):
        response = client.post(
            "/login", data={"email": user.email, "password": PASSWORD, "next": evil, "csrf_token": token}
        )
        assert response.headers["Location"] == "/", evil
        post_form(client, "/logout", {}, token_from="/")
        token = csrf_token(client, "/login")
    response = client.post(
        "/login", data={"email": user.email, "password": PASSWORD, "next": "/customers?q=1", "csrf_token": token}
    )
    assert response.headers["Location"] == "/customers?q=1"


def test_post_without_csrf_token_is_refused(client, make_user):
    user = make_user("admin")
    response = client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


def test_passwords_are_hashed_with_scrypt(make_user):
    user = make_user("admin")
    assert PASSWORD not in user.password_hash and user.password_hash.startswith("scrypt:")


def test_login_page_is_not_cached(client):
    assert client.get("/login").headers["Cache-Control"] == "no-store"


def test_change_own_password_is_audited(client, login_as, db):
    user = login_as("marketer")
    bad = post_form(
        client, "/account/password", {"current": "nope", "new": "another-long-pass", "confirm": "another-long-pass"}
    )
    assert "Current password is wrong" in bad.get_data(as_text=True)
    ok = post_form(
        client, "/account/password", {"current": PASSWORD, "new": "another-long-pass", "confirm": "another-long-pass"}
    )
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
