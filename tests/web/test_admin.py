"""Admin pages: users, stores, settings validation and audit entries."""

from sqlalchemy import select

from portal.models import AuditEntry, Setting, User
from portal.services import settings as settings_service
from tests.conftest import post_form


def test_admin_creates_user_and_sees_password_once(client, login_as, make_store, db):
    login_as("admin")
    store = make_store("Harbor")
    response = post_form(
        client, "/users", {"email": "new@example.com", "role": "manager", "store_id": store.id}, follow_redirects=True
    )
    html = response.get_data(as_text=True)
    assert "shown once" in html
    password = html.split("(shown once): ")[1].split("<")[0].strip()
    user = db.session.scalar(select(User).where(User.email == "new@example.com"))
    assert user.store_id == store.id and user.check_password(password)
    assert password not in client.get("/users").get_data(as_text=True)


def test_manager_needs_a_store(client, login_as):
    login_as("admin")
    response = post_form(client, "/users", {"email": "m2@example.com", "role": "manager", "store_id": 0})
    assert "belongs to one store" in response.get_data(as_text=True)


def test_cannot_demote_last_admin(client, login_as):
    admin = login_as("admin")
    response = post_form(client, f"/users/{admin.id}", {"role": "marketer", "store_id": 0, "active": "y"})
    assert "last active admin" in response.get_data(as_text=True)


def test_reset_password_is_audited(client, login_as, make_user, db):
    login_as("admin")
    other = make_user("marketer")
    response = post_form(client, f"/users/{other.id}/reset-password", {}, token_from="/users", follow_redirects=True)
    assert "New password for" in response.get_data(as_text=True)
    assert db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "user.password_reset", AuditEntry.target == other.email)
    )


def test_store_validation_messages(client, login_as):
    login_as("admin")
    response = post_form(
        client, "/stores", {"name": "X", "timezone": "Mars/Olympus", "currency": "US1", "phone_region": "ZZ"}
    )
    html = response.get_data(as_text=True)
    assert "Unknown time zone" in html and "three-letter currency" in html and "Unknown region" in html
    ok = post_form(
        client,
        "/stores",
        {"name": "Uptown", "timezone": "America/Los_Angeles", "currency": "usd", "phone_region": "us"},
    )
    assert ok.status_code == 302


def test_settings_validation_keeps_input_and_saves_nothing(client, login_as, db):
    login_as("admin")
    response = post_form(
        client, "/settings", {"tier.min_frequency": "-3", "churn.high": "80", "tier.message.progress": "Hi {nope}"}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "must be at least 1" in html and "unknown placeholder {nope}" in html
    assert 'value="-3"' in html
    assert db.session.scalar(select(Setting)) is None


def test_settings_change_is_audited_with_before_after(client, login_as, db):
    login_as("admin")
    response = post_form(client, "/settings", {"tier.min_frequency": "12", "reward.Gold": "30% off"})
    assert response.status_code == 302
    assert settings_service.get("tier.min_frequency") == 12
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.target == "tier.min_frequency"))
    assert entry.detail == {"before": 15, "after": 12}
    audit_page = client.get("/audit?action=settings").get_data(as_text=True)
    assert "tier.min_frequency" in audit_page


def test_band_cutoffs_must_be_ordered(client, login_as):
    login_as("admin")
    response = post_form(client, "/settings", {"churn.low": "80", "churn.high": "70"})
    assert "below the High band" in response.get_data(as_text=True)


def test_marketer_cannot_change_settings(client, login_as):
    login_as("marketer")
    token_page = "/customers"
    response = post_form(client, "/settings", {"tier.min_frequency": "3"}, token_from=token_page)
    assert response.status_code == 403


def test_staff_records_consent_audited(client, login_as, make_customer, make_store, db):
    login_as("admin")
    customer = make_customer(store=make_store())
    missing_source = post_form(client, f"/customers/{customer.id}", {"status": "opted_in", "source": ""})
    assert "Say where the opt-in came from" in missing_source.get_data(as_text=True)
    ok = post_form(
        client, f"/customers/{customer.id}", {"status": "opted_in", "source": "form at till", "effective": "2026-01-05"}
    )
    assert ok.status_code == 302
    db.session.refresh(customer)
    assert customer.sms_consent == "opted_in" and customer.sms_consent_at.date().isoformat() == "2026-01-05"
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "customer.consent"))
