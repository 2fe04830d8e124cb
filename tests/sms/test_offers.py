"""'Send an offer': the template library (defaults, per-store versions, admins' page) and the builder's
``purpose=`` / ``customer=`` arguments, through the audience JSON and the created campaign."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from portal.models import AuditEntry, Campaign, MessageTemplate, OutboxMessage
from portal.services.campaigns import campaigns, templates
from portal.sms_text import segment_info
from tests.conftest import csrf_token, post_form

CHICAGO = ZoneInfo("America/Chicago")


@pytest.fixture()
def stores(make_store):
    return make_store("Downtown", timezone="America/Chicago"), make_store("Harbor", timezone="America/New_York")


@pytest.fixture()
def people(make_customer, stores):
    downtown, harbor = stores
    consent = dict(sms_consent="opted_in", sms_consent_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    return {
        "ada": make_customer(downtown, external_id="C0235", name="Ada Lovelace", churn_band="High", **consent),
        "bob": make_customer(downtown, external_id="C0236", name="Bob Byte", churn_band="High", **consent),
        "hal": make_customer(harbor, external_id="H0001", name="Hal Harbor", churn_band="High", **consent),
    }


def builder_page(client, **args) -> str:
    return client.get("/campaigns", query_string=args).get_data(as_text=True)


def textarea(page: str, name: str = "template") -> str:
    match = re.search(rf'<textarea[^>]*name="{name}"[^>]*>(.*?)</textarea>', page, re.S)
    assert match, f"no textarea {name}"
    return html.unescape(match.group(1)).strip()


# --- the library -------------------------------------------------------------------------------


def test_every_default_uses_known_placeholders_and_fits_two_segments(app):
    assert {"win_back", "tier_up", "bundle"} <= set(templates.PURPOSES)
    for purpose in templates.PURPOSES.values():
        campaigns.validate_template(purpose.default)  # raises on an unknown placeholder
        assert "{code}" in purpose.default and "{expires}" in purpose.default
        stats = templates.text_stats(purpose.default)
        assert stats["encoding"] == "GSM-7" and stats["segments"] <= 2, purpose.key


def test_a_store_reads_its_own_version_else_the_chains_else_the_default(db, stores):
    downtown, harbor = stores
    default = templates.PURPOSES["win_back"].default
    assert templates.template_for("win_back", downtown.id) == default
    templates.save("win_back", "Chain: {first_name}, {code} until {expires}", None, "admin@example.com")
    templates.save("win_back", "Downtown: {first_name}, {code} until {expires}", downtown.id, "admin@example.com")
    assert templates.template_for("win_back", downtown.id).startswith("Downtown:")
    assert templates.template_for("win_back", harbor.id).startswith("Chain:")
    assert templates.template_for("win_back", None).startswith("Chain:")
    assert templates.reset("win_back", downtown.id, "admin@example.com")
    assert templates.template_for("win_back", downtown.id).startswith("Chain:")
    assert templates.reset("win_back", None, "admin@example.com")
    assert templates.template_for("win_back", downtown.id) == default
    assert not templates.reset("win_back", None, "admin@example.com")  # nothing left to reset
    actions = db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["template.change", "template.change", "template.reset", "template.reset"]


def test_saving_refuses_unknown_placeholders_and_purposes(db):
    with pytest.raises(campaigns.CampaignError, match=r"Unknown placeholder \{coupon\}"):
        templates.save("win_back", "Hi {first_name}, use {coupon}", None, "a@example.com")
    with pytest.raises(templates.TemplateError, match="no message template"):
        templates.save("spam", "Hi", None, "a@example.com")
    assert db.session.scalar(select(MessageTemplate)) is None


def test_admin_edits_the_library_on_its_page_with_csrf_and_sees_segments(client, login_as, db, stores):
    downtown, _harbor = stores
    login_as("admin")
    page = client.get("/campaigns/templates").get_data(as_text=True)
    assert "Win-back" in page and "Tier-up" in page and "Bundle offer" in page
    assert re.search(r"GSM-7 · \d+ characters · [12] segments? per message", page)
    # no CSRF token: refused
    assert client.post("/campaigns/templates", data={"purpose": "bundle", "body": "x {code}"}).status_code == 400
    # an unknown placeholder: the page again, with the reason beside the text typed
    bad = post_form(client, "/campaigns/templates", {"purpose": "bundle", "store": "", "body": "Hi {name}, {code}"})
    assert bad.status_code == 400
    text = bad.get_data(as_text=True)
    assert "Unknown placeholder {name}" in text and "Hi {name}, {code}" in text
    long_text = "Hi {first_name}, " + "a" * 200 + " {code}"
    ok = post_form(
        client,
        "/campaigns/templates",
        {"purpose": "bundle", "store": str(downtown.id), "body": long_text},
        follow_redirects=True,
    )
    assert ok.status_code == 200 and "Bundle offer saved for this store." in ok.get_data(as_text=True)
    row = db.session.scalar(select(MessageTemplate))
    assert (row.purpose, row.store_id, row.body) == ("bundle", downtown.id, long_text)
    store_page = client.get(f"/campaigns/templates?store={downtown.id}").get_data(as_text=True)
    section = store_page[store_page.index('id="template-bundle"') :]
    assert "edited for this store" in section[:600] and "2 segments per message" in section
    assert client.get("/campaigns/templates?store=999").status_code == 404


def test_only_admins_change_the_library(client, login_as, stores):
    login_as("manager", store=stores[0])
    page = client.get("/campaigns/templates")
    assert page.status_code == 200 and "<textarea" not in page.get_data(as_text=True)  # read-only
    token = csrf_token(client, "/campaigns")
    response = client.post("/campaigns/templates", data={"purpose": "bundle", "body": "Hi {code}", "csrf_token": token})
    assert response.status_code == 403


# --- purpose= and customer= in the builder ---------------------------------------------------------


def test_send_an_offer_link_fills_the_template_and_targets_one_customer(client, login_as, people, stores, db):
    templates.save("win_back", "Downtown misses you {first_name}: {code} until {expires}", stores[0].id, "a@x.org")
    login_as("manager", store=stores[0])
    page = builder_page(client, customer="C0235", purpose="win_back")
    assert textarea(page) == "Downtown misses you {first_name}: {code} until {expires}"
    assert 'value="Win-back for C0235"' in page
    assert 'id="target-customer"' in page and "Ada Lovelace" in page
    assert re.search(r'data-audience="eligible">1<', page)  # the audience is exactly Ada
    assert "Downtown misses you Ada: " in html.unescape(page)  # the preview is rendered for her
    summary = client.get("/campaigns/audience", query_string={"customer": "C0235", "control": "0"}).get_json()
    assert (summary["total"], summary["eligible"], summary["messages"], summary["problem"]) == (1, 1, 1, "")


def test_another_stores_customer_or_an_unknown_id_is_said_clearly(client, login_as, people, stores):
    login_as("manager", store=stores[0])
    for external_id in ("H0001", "NOPE42"):  # Harbor's customer, and nobody: the same answer
        page = html.unescape(builder_page(client, customer=external_id, purpose="win_back"))
        assert f"No customer with the id “{external_id}” in your stores" in page
        assert "Hal Harbor" not in page
        summary = client.get("/campaigns/audience", query_string={"customer": external_id}).get_json()
        assert summary["total"] == 0 and summary["problem"].startswith(f"No customer with the id “{external_id}”")


def test_unknown_purpose_says_which_exist(client, login_as, people):
    login_as("admin")
    page = html.unescape(builder_page(client, purpose="spam"))
    assert "There is no message template “spam”; choose one of Win-back" in page
    assert textarea(page) == ""


def test_the_customer_filter_is_stored_with_the_campaign(client, login_as, people, stores, db):
    login_as("admin")  # an admin targeting one customer: the campaign belongs to the customer's store
    day = (datetime.now(CHICAGO) + timedelta(days=20)).date().isoformat()
    data = {
        "name": "Win-back for C0235",
        "segment": "",
        "band": "",
        "lifecycle": "",
        "tier": "",
        "store": "",
        "customer": "C0235",
        "template": templates.template_for("win_back", stores[0].id),
        "control": "0",
        "when": "now",
        "expires": day,
        "action": "create",
    }
    response = post_form(client, "/campaigns", data, token_from="/campaigns?customer=C0235&purpose=win_back")
    assert response.status_code == 302, re.findall(
        r"(?:alert-danger|invalid-feedback)[^>]*>([^<]+)", response.get_data(as_text=True)
    )
    campaign = db.session.scalar(select(Campaign))
    assert campaign.audience == "customer=C0235" and campaign.store_id == stores[0].id
    rows = db.session.scalars(select(OutboxMessage)).all()
    assert [r.customer_id for r in rows] == [people["ada"].id]
    expiry = datetime.fromisoformat(day)
    assert rows[0].body.startswith("Hi Ada, we miss you at Downtown! Enjoy 20% off")  # names the store: no prefix
    assert f"valid until {expiry:%b} {expiry.day}. Reply STOP to opt out" in rows[0].body
    assert segment_info(rows[0].body).segments <= 2


def test_creating_for_a_customer_out_of_scope_is_refused_with_the_reason(client, login_as, people, stores, db):
    login_as("manager", store=stores[0])
    day = (datetime.now(CHICAGO) + timedelta(days=20)).date().isoformat()
    data = {"name": "X", "customer": "H0001", "template": "Hi {code}", "control": "0", "when": "now", "expires": day}
    data.update(segment="", band="", lifecycle="", tier="", store="Downtown")
    response = post_form(client, "/campaigns", {**data, "action": "create"})
    assert response.status_code == 400
    assert "No customer with the id “H0001” in your stores" in html.unescape(response.get_data(as_text=True))
    assert db.session.scalar(select(Campaign)) is None
    with pytest.raises(campaigns.CampaignError, match="No customer with the id"):
        campaigns.create_campaign("X", "customer=NOPE", "Hi {code}")
