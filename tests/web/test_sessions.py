"""Sessions end when they should (logout, password change or reset, timeouts) and secrets stay off the client."""

from __future__ import annotations

import io
import os
import re
import stat
from datetime import timedelta
from types import SimpleNamespace

import pytest
from flask import g
from sqlalchemy import select

from portal import login_sessions
from portal.models import User
from portal.services import accounts
from tests.conftest import PASSWORD, csrf_token, login, post_form

START = 1_800_000_000.0


class Browser:
    """A test client that behaves like a separate browser (own cookies, own address).

    The ``app`` fixture keeps one application context open for the whole test, so ``g`` (Flask-Login's
    user, Flask-WTF's token) would carry one request's user into the next; a real request never sees that.
    """

    def __init__(self, app, address: str = "127.0.0.1"):
        self.client = app.test_client()
        self.client.environ_base["REMOTE_ADDR"] = address

    def open(self, *args, **kwargs):
        vars(g).clear()
        return self.client.open(*args, **kwargs)

    def get(self, *args, **kwargs):
        return self.open(*args, method="GET", **kwargs)

    def post(self, *args, **kwargs):
        return self.open(*args, method="POST", **kwargs)


@pytest.fixture()
def clock(monkeypatch):
    """The session clock, frozen at START; ``clock.now`` moves it."""
    state = SimpleNamespace(now=START)
    monkeypatch.setattr(login_sessions, "now", lambda: state.now)
    return state


def logged_in(app, user, password=PASSWORD, address="127.0.0.1") -> Browser:
    browser = Browser(app, address)
    assert login(browser, user.email, password).status_code == 302
    assert browser.get("/").status_code == 200
    return browser


def assert_sent_to_login(browser, message: str):
    response = browser.get("/customers")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login"), response.status_code
    assert message in browser.get(response.headers["Location"]).get_data(as_text=True)
    assert browser.get("/").status_code == 302  # and it stays logged out


# --- item 9: ending sessions ------------------------------------------------------------------


def test_logging_out_ends_the_users_other_sessions(app, make_user):
    user = make_user("manager")
    laptop, phone = logged_in(app, user), logged_in(app, user, address="198.51.100.7")
    post_form(laptop, "/logout", {}, token_from="/")
    assert_sent_to_login(phone, "Your session was ended")


def test_changing_password_ends_other_sessions_and_keeps_this_one(app, make_user):
    user = make_user("marketer")
    laptop, phone = logged_in(app, user), logged_in(app, user, address="198.51.100.7")
    response = post_form(
        laptop,
        "/account/password",
        {"current": PASSWORD, "new": "violet-tandem-orchard", "confirm": "violet-tandem-orchard"},
    )
    assert response.status_code == 302
    assert laptop.get("/customers").status_code == 200  # re-stamped with the new version
    assert_sent_to_login(phone, "Your session was ended")
    assert logged_in(app, user, "violet-tandem-orchard")


@pytest.mark.parametrize("change", ["reset", "deactivate", "role", "store"])
def test_admin_changes_end_the_users_sessions(app, make_user, make_store, change, db):
    store, other_store = make_store("North"), make_store("South")
    user = make_user("manager", store=store)
    admin = logged_in(app, make_user("admin"))
    victim = logged_in(app, user, address="198.51.100.7")
    if change == "reset":
        assert post_form(admin, f"/users/{user.id}/reset-password", {}, token_from="/users").status_code == 200
    else:
        data = {"role": "manager", "store_id": store.id, "active": "y"}
        data.update(
            {"deactivate": {"active": ""}, "role": {"role": "marketer"}, "store": {"store_id": other_store.id}}[change]
        )
        data = {k: v for k, v in data.items() if v != ""}
        assert post_form(admin, f"/users/{user.id}", data).status_code == 302
    assert_sent_to_login(victim, "Your session was ended" if change != "deactivate" else "log in again")
    assert admin.get("/users").status_code == 200  # the admin's own session is untouched


def test_an_admin_resetting_their_own_password_stays_logged_in(app, make_user):
    admin_user = make_user("admin")
    admin, elsewhere = logged_in(app, admin_user), logged_in(app, admin_user, address="198.51.100.7")
    assert post_form(admin, f"/users/{admin_user.id}/reset-password", {}, token_from="/users").status_code == 200
    assert admin.get("/users").status_code == 200
    assert elsewhere.get("/users").status_code == 302


def test_a_stale_remember_cookie_is_refused(app, make_user, db):
    from flask_login.utils import encode_cookie

    user = make_user("admin")
    with app.test_request_context():
        stale = encode_cookie(user.get_id())
        accounts.logout(user)
        current = encode_cookie(user.get_id())
    for cookie, expected in ((current, 200), (stale, 302)):
        browser = Browser(app)
        browser.client.set_cookie("remember_token", cookie)
        assert browser.get("/").status_code == expected


def test_a_session_id_without_version_is_refused(app, make_user):
    user = make_user("admin")
    browser = logged_in(app, user)
    with browser.client.session_transaction() as session:
        session["_user_id"] = str(user.id)  # as written before versions existed
    assert browser.get("/").status_code == 302


# --- item 9: idle timeout and absolute lifetime -------------------------------------------------


def test_idle_session_is_logged_out(app, make_user, clock):
    browser = logged_in(app, make_user("admin"))
    clock.now += 29 * 60
    assert browser.get("/customers").status_code == 200  # activity moves "last seen"
    clock.now += 29 * 60
    assert browser.get("/customers").status_code == 200
    clock.now += 31 * 60
    assert_sent_to_login(browser, "after 30 minutes without activity")


def test_session_ends_after_its_lifetime_however_active(app, make_user, clock):
    browser = logged_in(app, make_user("admin"))
    for _ in range(11 * 3 + 2):  # a request every 20 minutes for 11 h 40 min
        clock.now += 20 * 60
        assert browser.get("/").status_code == 200
    clock.now += 21 * 60
    assert_sent_to_login(browser, "12-hour limit")


def test_limits_come_from_the_settings(app, make_user, clock, monkeypatch):
    monkeypatch.setitem(app.config, "SESSION_IDLE_MINUTES", 5)
    browser = logged_in(app, make_user("admin"))
    clock.now += 6 * 60
    assert_sent_to_login(browser, "after 5 minutes")


def test_session_settings_are_read_from_the_environment(monkeypatch):
    from portal.config import Config

    monkeypatch.delenv("SESSION_IDLE_MINUTES", raising=False)
    monkeypatch.delenv("SESSION_MAX_HOURS", raising=False)
    config = Config()
    assert (config.SESSION_IDLE_MINUTES, config.SESSION_MAX_HOURS) == (30, 12)
    assert config.PERMANENT_SESSION_LIFETIME == timedelta(hours=12)
    monkeypatch.setenv("SESSION_IDLE_MINUTES", "15")
    monkeypatch.setenv("SESSION_MAX_HOURS", "8")
    assert (Config().SESSION_IDLE_MINUTES, Config().SESSION_MAX_HOURS) == (15, 8)
    monkeypatch.setenv("SESSION_MAX_HOURS", "0")
    with pytest.raises(ValueError, match="SESSION_MAX_HOURS"):
        Config()


# --- item 12: passwords ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password, reason",
    [
        ("password123", "most common"),
        ("QWERTYUIOP", "most common"),
        ("marketer-2026!", "e-mail address"),
        ("xx marketer@example.com", "e-mail address"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(app, make_user, password, reason):
    user = make_user("marketer")
    browser = logged_in(app, user)
    response = post_form(browser, "/account/password", {"current": PASSWORD, "new": password, "confirm": password})
    assert response.status_code == 200 and reason in response.get_data(as_text=True)
    with pytest.raises(accounts.WeakPasswordError, match=reason):
        accounts.create_user("x" + user.email, "admin", password.replace("marketer", "xmarketer"))


def test_cli_and_first_admin_refuse_common_passwords(runner, monkeypatch, db):
    from portal.cli import ensure_first_admin

    result = runner.invoke(
        args=["users", "create", "c@example.com", "--role", "admin", "--password-stdin"], input="1234567890\n"
    )
    assert result.exit_code == 1 and "most common" in result.output
    monkeypatch.setenv("ADMIN_EMAIL", "boss@example.com")
    monkeypatch.setenv("ADMIN_PASSWORD", "boss@example.com!")
    with pytest.raises(accounts.WeakPasswordError):
        ensure_first_admin()
    monkeypatch.delenv("ADMIN_PASSWORD")
    line = ensure_first_admin()
    password = line.split("with password ")[1].split(" ")[0]
    accounts.check_password_strength(password, "boss@example.com")


def test_generated_passwords_pass_the_rules():
    for _ in range(200):
        accounts.check_password_strength(accounts.generate_password("abcd@example.com"), "abcd@example.com")


def test_suite_password_passes_the_rules():
    accounts.check_password_strength(PASSWORD, "admin@example.com")


# --- item 13: a reset password never travels in the cookie ----------------------------------------


def session_payloads(app, response) -> list[str]:
    """Every Set-Cookie of ``response``, with the Flask session decoded by the app's own serializer."""
    serializer = app.session_interface.get_signing_serializer(app)
    out = []
    for header in response.headers.getlist("Set-Cookie"):
        out.append(header)
        name, _, rest = header.partition("=")
        value = rest.split(";")[0]
        if name == app.config["SESSION_COOKIE_NAME"] and value:
            out.append(repr(serializer.loads(value)))
    return out


@pytest.mark.parametrize("action", ["reset", "create"])
def test_new_password_is_shown_once_from_the_server_never_in_the_cookie(app, make_user, db, action):
    admin = logged_in(app, make_user("admin"))
    other = make_user("marketer")
    if action == "reset":
        response = post_form(admin, f"/users/{other.id}/reset-password", {}, token_from="/users")
    else:
        response = post_form(admin, "/users", {"email": "new@example.com", "role": "marketer", "store_id": 0})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    password = re.search(r"\(shown once\): (\S+?)<", html).group(1)
    email = other.email if action == "reset" else "new@example.com"
    assert db.session.scalar(select(User).where(User.email == email)).check_password(password)
    payloads = session_payloads(app, response)
    assert payloads and not [p for p in payloads if password in p]
    assert password not in admin.get("/users").get_data(as_text=True)


# --- item 14: caching, logs, files, roles ----------------------------------------------------------


def test_every_logged_in_page_is_no_store(app, make_user):
    anonymous = Browser(app)
    assert "no-store" not in anonymous.get("/healthz").headers.get("Cache-Control", "")
    browser = logged_in(app, make_user("admin"))
    for path in ("/", "/customers", "/users", "/account/password"):
        assert browser.get(path).headers["Cache-Control"] == "no-store", path
    assert "no-store" not in browser.get("/static/css/app.css").headers.get("Cache-Control", "")


def test_gunicorn_access_log_masks_phones_and_emails():
    import runpy

    from gunicorn.config import Config as GunicornConfig

    from portal.access_log import MaskingAccessLogger

    settings = runpy.run_path(os.path.join(os.path.dirname(__file__), "..", "..", "gunicorn.conf.py"))
    assert settings["logger_class"] == "portal.access_log.MaskingAccessLogger"
    cfg = GunicornConfig()
    cfg.set("logger_class", settings["logger_class"])
    assert cfg.logger_class is MaskingAccessLogger
    logger = MaskingAccessLogger(cfg)
    query = "q=%2B1+202+555+0142&email=ann.lee%40example.com&page=2"
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/customers?{query}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": "/customers",
        "QUERY_STRING": query,
        "REMOTE_ADDR": "192.0.2.1",
        "HTTP_REFERER": f"https://shop.example/customers?{query}",
        "HTTP_USER_AGENT": "test",
    }
    response = SimpleNamespace(status="200 OK", headers=[], sent=10)
    atoms = logger.atoms_wrapper_class(
        logger.atoms(response, SimpleNamespace(headers=[]), environ, timedelta(milliseconds=5))
    )
    line = cfg.access_log_format % atoms
    assert "GET /customers?q=" in line and "page=2" in line
    for secret in ("555", "0142", "ann.lee", "ann.lee%40"):
        assert secret not in line, line
    assert "42" in line and "@example.com" in line  # enough left for support
    plain = {**environ, "RAW_URI": "/customers?page=2", "QUERY_STRING": "page=2", "HTTP_REFERER": "-"}
    assert "GET /customers?page=2 HTTP/1.1" in cfg.access_log_format % logger.atoms_wrapper_class(
        logger.atoms(response, SimpleNamespace(headers=[]), plain, timedelta(milliseconds=5))
    )


def test_new_sqlite_database_file_is_private(tmp_path, models_dir):
    from app import create_app
    from portal.config import TestConfig
    from portal.extensions import db as _db

    path = tmp_path / "fresh.db"
    app = create_app(TestConfig(database_url=f"sqlite:///{path}", models_dir=models_dir))
    with app.app_context():
        _db.create_all()
        _db.engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for extra in tmp_path.glob("fresh.db-*"):
        assert stat.S_IMODE(extra.stat().st_mode) & 0o077 == 0, extra


def test_uploads_are_saved_private(app):
    from portal.services.importer.runs import save_upload

    path = save_upload(io.BytesIO(b"customer_id,phone\nC1,+12025550142\n"), "people.csv")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.unlink(path)


def test_new_user_form_defaults_to_the_least_privileged_role(app, make_user):
    browser = logged_in(app, make_user("admin"))
    html = browser.get("/users").get_data(as_text=True)
    selected = re.search(r'<option[^>]*selected[^>]*value="(\w+)"|<option[^>]*value="(\w+)"[^>]*selected', html)
    assert "marketer" in selected.groups()


# --- item 8b: next= with control characters on /campaigns/redeem -------------------------------------


def test_redeem_with_crlf_in_next_is_not_a_500(app, make_user, make_store, make_customer):
    store = make_store("North")
    customer = make_customer(store=store)
    browser = logged_in(app, make_user("admin"))
    page = f"/customers/{customer.id}"
    token = csrf_token(browser, page)
    response = browser.post(
        "/campaigns/redeem",
        data={"csrf_token": token, "customer_id": customer.id, "code": "NOPE", "next": page + "\r\nSet-Cookie: x=1"},
    )
    assert response.status_code == 302 and response.headers["Location"] == page
