"""Preferences page, the signed unsubscribe link (no login; refused when tampered) and the admins' mail log."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.models import MailMessage, MailPreference
from portal.services.mail import alerts, preferences
from tests.conftest import post_form


def _link(user, kind="digest"):
    return f"/mail/unsubscribe/{preferences.token(user.id, kind)}"


def test_new_users_get_alerts_and_a_monday_digest_and_can_change_it(app, db, client, login_as):
    user = login_as("manager")
    html = client.get("/account/mail").get_data(as_text=True)
    assert re.search(r'<option selected value="0">Monday</option>|<option value="0" selected>Monday', html)
    assert re.search(r'<option selected value="8">08:00</option>|<option value="8" selected>08:00', html)
    for kind in preferences.KINDS:
        assert re.search(rf'id="{kind}"[^>]*checked|checked[^>]*id="{kind}"', html), kind

    response = post_form(
        client, "/account/mail", {"digest": "y", "digest_weekday": "4", "digest_hour": "17", "risk": "y"}
    )
    assert response.status_code == 302
    saved = preferences.for_user(user.id)
    assert (saved.digest, saved.digest_weekday, saved.digest_hour) == (True, 4, 17)
    assert (saved.risk, saved.failures, saved.paused, saved.optouts) == (True, False, False, False)


def test_a_bad_hour_is_refused_with_a_message(app, db, client, login_as):
    login_as("manager")
    response = post_form(client, "/account/mail", {"digest": "y", "digest_weekday": "2", "digest_hour": "25"})
    assert response.status_code == 400
    assert "Not a valid choice" in response.get_data(as_text=True)


def test_the_unsubscribe_link_works_without_logging_in(app, db, client, make_user):
    user = make_user("manager")
    link = _link(user, "digest")
    page = client.get(link)
    assert page.status_code == 200
    assert "Weekly digest" in page.get_data(as_text=True) and user.email in page.get_data(as_text=True)
    assert preferences.for_user(user.id).digest  # a GET (a link scanner) changes nothing

    done = client.post(link)  # no session, no CSRF token: the signature is the proof
    assert done.status_code == 200 and "no longer gets" in done.get_data(as_text=True)
    choices = preferences.for_user(user.id)
    assert not choices.digest and choices.risk and choices.failures  # only that kind


def test_one_click_unsubscribe_from_a_mail_client(app, db, client, make_user):
    user = make_user("manager")
    response = client.post(_link(user, "paused"), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert not preferences.for_user(user.id).paused


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: t.split(".")[0] + ".",  # signature cut off
        lambda t: "WzIsImRpZ2VzdCJd." + t.split(".")[1],  # another user's id with this signature
        lambda t: "nonsense",
    ],
)
def test_a_tampered_unsubscribe_link_is_refused(app, db, client, make_user, tamper):
    user = make_user("manager")
    make_user("admin")  # user id 2 exists: the forged id names a real user
    bad = f"/mail/unsubscribe/{tamper(preferences.token(user.id, 'digest'))}"
    for response in (client.get(bad), client.post(bad)):
        assert response.status_code == 400
        assert "not valid" in response.get_data(as_text=True)
    assert db.session.scalars(select(MailPreference)).all() == []


def test_admins_see_what_was_sent_and_others_may_not(app, db, client, make_store, make_user, login_as):
    store = make_store("Downtown")
    manager = make_user("manager", store=store)
    alerts.flow_paused(store.id, "Win-back", "Monthly SMS budget reached")
    alerts.alerts_job(progress=lambda *a: None)  # no MAIL_SERVER: written to the log, nothing sent
    row = db.session.scalar(select(MailMessage).where(MailMessage.user_id == manager.id))
    assert row.status == "logged" and row.sent_at is not None

    login_as("admin")
    html = client.get("/admin/mail").get_data(as_text=True)
    assert "Automation paused: Win-back — Downtown" in html and manager.email in html and "logged" in html
    assert "No MAIL_SERVER is configured" in html
    shown = client.get(f"/admin/mail?show={row.id}").get_data(as_text=True)
    assert "Monthly SMS budget reached" in shown
    assert client.get("/admin/mail?status=bogus").status_code == 400


def test_store_users_cannot_open_the_mail_log(app, db, client, login_as):
    login_as("manager")
    assert client.get("/admin/mail").status_code == 403


def test_anonymous_users_are_sent_to_login_for_preferences(app, db, client):
    response = client.get("/account/mail")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_logged_mail_carries_its_unsubscribe_link(app, db, make_store, make_user):
    store = make_store("Downtown")
    manager = make_user("manager", store=store)
    alerts.flow_paused(store.id, "Win-back", "budget")
    alerts.alerts_job(progress=lambda *a: None)
    row = db.session.scalar(select(MailMessage).where(MailMessage.user_id == manager.id))
    assert row.unsubscribe_url.startswith("https://loyalist.example.com/mail/unsubscribe/")
    assert row.unsubscribe_url in row.body_text and row.unsubscribe_url in row.body_html
