"""Behind a reverse proxy: PROXY_FIX trusts X-Forwarded-* (scheme, host, client address); off, they are ignored."""

from __future__ import annotations

import pytest
from flask import request, url_for
from sqlalchemy import select
from werkzeug.middleware.proxy_fix import ProxyFix

from app import create_app
from portal.config import Config
from portal.config import TestConfig as SuiteConfig  # the alias keeps pytest from collecting it
from portal.extensions import db as _db
from portal.models import LoginAttempt
from portal.sms import compute_signature
from tests.conftest import csrf_token, login, post_form

TOKEN = "proxy-test-auth-token"
HTTPS = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "loyalty.example.com"}


@pytest.fixture(scope="module")
def proxied_app(_app, database_url, models_dir):
    """A second app on the suite's database, built with PROXY_FIX=1; it records what each request saw."""
    config = SuiteConfig(database_url=database_url, models_dir=models_dir)
    config.PROXY_FIX = 1
    app = create_app(config)
    seen = app.extensions["proxy_probe"] = []

    @app.before_request
    def probe():
        seen.append(
            {
                "login_url": url_for("auth.login", _external=True),
                "remote_addr": request.remote_addr,
                "secure": request.is_secure,
            }
        )

    yield app
    with app.app_context():
        _db.engine.dispose()


@pytest.fixture()
def proxied(app, proxied_app):
    """(test client, probe records) for the proxied app; ``app`` empties the tables afterwards."""
    proxied_app.extensions["proxy_probe"].clear()
    proxied_app.config.update(TWILIO_AUTH_TOKEN=TOKEN, PUBLIC_BASE_URL=None)
    return proxied_app.test_client(), proxied_app.extensions["proxy_probe"]


def session_cookie(response) -> str:
    cookies = [value for value in response.headers.getlist("Set-Cookie") if value.startswith("session=")]
    assert cookies, "no session cookie was set"
    return cookies[-1]


def fail_logins_from(client, email: str, count: int, headers: dict) -> None:
    """``count`` wrong passwords for ``email``: the throttle keys on this account + the client's address."""
    for _ in range(count):
        response = post_form(client, "/login", {"email": email, "password": "wrong-wrong"}, headers=headers)
        assert response.status_code == 401


def test_proxy_fix_is_off_by_default_and_read_from_the_environment(monkeypatch, app):
    monkeypatch.delenv("PROXY_FIX", raising=False)
    assert Config().PROXY_FIX == 0
    assert not isinstance(app.wsgi_app, ProxyFix)
    monkeypatch.setenv("PROXY_FIX", "2")
    assert Config().PROXY_FIX == 2
    monkeypatch.setenv("PROXY_FIX", "yes")
    with pytest.raises(ValueError, match="number of trusted reverse proxies"):
        Config()


def test_https_through_the_proxy_gives_https_links_and_a_secure_cookie(proxied):
    client, seen = proxied
    response = client.get("/login", headers=HTTPS)
    assert response.status_code == 200
    assert seen[-1]["login_url"] == "https://loyalty.example.com/login"
    assert seen[-1]["secure"] is True
    assert "Secure" in session_cookie(response)


def test_plain_http_through_the_proxy_keeps_the_cookie_usable_over_http(proxied):
    client, seen = proxied
    response = client.get("/login", headers={"X-Forwarded-Proto": "http"})
    assert seen[-1]["login_url"] == "http://localhost/login"
    assert "Secure" not in session_cookie(response)


def test_logging_in_over_https_through_the_proxy_works(proxied, make_user):
    client, _ = proxied
    user = make_user("admin")
    token = csrf_token(client, "/login")
    # Over HTTPS Flask-WTF also checks the Referer against the (forwarded) host, as a browser sends it.
    response = client.post(
        "/login",
        data={"email": user.email, "password": "correct-horse-battery", "csrf_token": token},
        headers={**HTTPS, "Referer": "https://loyalty.example.com/login"},
    )
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "Secure" in session_cookie(response)


def test_forwarded_client_address_is_the_throttle_key(proxied, make_user, db):
    client, seen = proxied
    # The client forged the first entry; the one trusted proxy appended the address it really saw.
    user = make_user("admin")
    fail_logins_from(client, user.email, 5, {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
    addresses = set(db.session.scalars(select(LoginAttempt.address)))
    assert addresses == {"203.0.113.7"}
    blocked = post_form(
        client,
        "/login",
        {"email": user.email, "password": "correct-horse-battery"},
        headers={"X-Forwarded-For": "203.0.113.7"},
    )
    assert blocked.status_code == 429
    other = post_form(
        client,
        "/login",
        {"email": user.email, "password": "correct-horse-battery"},
        headers={"X-Forwarded-For": "192.0.2.44"},
    )
    assert other.status_code == 302
    assert seen[-1]["remote_addr"] == "192.0.2.44"


def test_without_proxy_fix_forwarded_headers_change_nothing(client):
    response = client.get("/login", headers={**HTTPS, "X-Forwarded-For": "203.0.113.7"})
    assert "Secure" not in session_cookie(response)


def test_without_proxy_fix_a_forged_forwarded_for_is_ignored(client, make_user, db):
    user = make_user("admin")
    for i in range(5):
        response = post_form(
            client,
            "/login",
            {"email": user.email, "password": "wrong-wrong"},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
        )
        assert response.status_code == 401
    assert set(db.session.scalars(select(LoginAttempt.address))) == {"127.0.0.1"}
    response = post_form(
        client,
        "/login",
        {"email": user.email, "password": "correct-horse-battery"},
        headers={"X-Forwarded-For": "192.0.2.99"},
    )
    assert response.status_code == 429
    assert login(client, user.email).status_code == 429


def status_callback(client, signed_url: str, headers: dict):
    params = {"MessageSid": "SM" + "7" * 32, "MessageStatus": "delivered", "AccountSid": "AC" + "a" * 32}
    signature = compute_signature(TOKEN, signed_url, params)
    return client.post("/sms/status", data=params, headers={**headers, "X-Twilio-Signature": signature})


def test_webhook_signature_still_checks_public_base_url(proxied, proxied_app):
    client, _ = proxied
    proxied_app.config["PUBLIC_BASE_URL"] = "https://loyalty.example.com"
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "other.example.com"}
    assert status_callback(client, "https://loyalty.example.com/sms/status", forwarded).status_code == 204
    assert status_callback(client, "https://other.example.com/sms/status", forwarded).status_code == 403


def test_webhook_without_public_base_url_uses_the_forwarded_url(proxied):
    client, _ = proxied
    assert status_callback(client, "https://loyalty.example.com/sms/status", HTTPS).status_code == 204
    assert status_callback(client, "http://localhost/sms/status", HTTPS).status_code == 403
