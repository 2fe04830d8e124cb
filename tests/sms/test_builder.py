"""The campaign builder: live counts, preview and segments, exclusions shown = applied, roles, the whole path."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from portal.models import AuditEntry, Campaign, OutboxMessage, SavedSegment
from tests.conftest import csrf_token, post_form

LANDLINE = "+442079460000"
NY = ZoneInfo("America/New_York")
PRICE = 0.0083


@pytest.fixture()
def store(make_store):
    return make_store("Corner Shop", sender_name="CornerShop", timezone="America/New_York")


@pytest.fixture()
def opted_in(make_customer, store):
    def make(**kw):
        kw.setdefault("sms_consent", "opted_in")
        kw.setdefault("sms_consent_at", datetime(2025, 1, 1, tzinfo=timezone.utc))
        kw.setdefault("sms_consent_source", "import")
        return make_customer(kw.pop("store", store), **kw)

    return make


@pytest.fixture()
def no_quiet_hours(db):
    from portal.services import settings

    assert settings.update({"sms.quiet_start": "00:00", "sms.quiet_end": "00:00"}) == {}


def mixed_audience(opted_in, make_customer, store):
    """Three customers who can be messaged and one of every exclusion reason (all High risk)."""
    ok = [opted_in(name=f"Ann{i} Lee", churn_band="High", tier="Gold") for i in range(3)]
    opted_in(sms_consent="opted_out", churn_band="High")
    make_customer(store, churn_band="High")  # no recorded opt-in
    opted_in(phone=None, churn_band="High")
    opted_in(phone=LANDLINE, churn_band="High")
    opted_in(last_sms_at=datetime.now(timezone.utc) - timedelta(days=2), churn_band="High")
    opted_in(churn_band="Low")  # outside the filter
    return ok


def builder_data(**overrides):
    tomorrow = (datetime.now(NY) + timedelta(days=20)).date().isoformat()
    data = {
        "name": "Win back",
        "segment": "",
        "band": "High",
        "tier": "",
        "store": "Corner Shop",
        "min_recency": "",
        "max_recency": "",
        "days_since_sms": "",
        "q": "",
        "consent": "",
        "template": "Hi {first_name}, 20% off with {code} until {expires}",
        "control": "0",
        "when": "now",
        "send_at": "",
        "expires": tomorrow,
        "action": "create",
    }
    data.update(overrides)
    return data


def preview(client, **fields):
    token = csrf_token(client, "/campaigns")
    response = client.post("/campaigns/preview", data={**builder_data(), **fields, "csrf_token": token})
    return response


# --- segment counting through the builder ------------------------------------------------------


def exact(text_len: int, filler: str = "a", extra: str = "") -> str:
    """A template whose rendered body is exactly itself (it names the sender and says how to stop)."""
    head, tail = "CornerShop ", " Reply STOP to opt out"
    body = head + filler * (text_len - len(head) - len(tail) - len(extra)) + extra + tail
    assert len(body) == text_len
    return body


@pytest.mark.parametrize("length, segments", [(160, 1), (161, 2), (306, 2), (307, 3)])
def test_gsm7_bodies_count_160_then_153_per_part(client, login_as, opted_in, length, segments):
    opted_in(churn_band="High")
    login_as("admin")
    data = preview(client, template=exact(length)).get_json()
    assert (data["encoding"], data["characters"], data["segments"]) == ("GSM-7", length, segments)
    assert data["per_segment_limit"] == (160 if segments == 1 else 153)
    assert data["warning"] == "" and data["previews"][0]["body"] == exact(length)


@pytest.mark.parametrize("length, segments", [(70, 1), (71, 2), (134, 2), (135, 3)])
def test_one_ucs2_character_switches_to_70_then_67_and_is_named(client, login_as, opted_in, length, segments):
    opted_in(churn_band="High")
    login_as("admin")
    data = preview(client, template=exact(length, extra="ł")).get_json()
    assert (data["encoding"], data["characters"], data["segments"]) == ("UCS-2", length, segments)
    assert data["ucs2_chars"] == ["ł"]
    assert "“ł” (U+0142)" in data["warning"] and "forces UCS-2" in data["warning"]


def test_an_emoji_counts_two_units(client, login_as, opted_in):
    opted_in(churn_band="High")
    login_as("admin")
    # 68 characters + one emoji = 70 UTF-16 units: one segment; one character more needs two.
    one = preview(client, template=exact(69, extra="😀")).get_json()
    two = preview(client, template=exact(70, extra="😀")).get_json()
    assert (one["encoding"], one["characters"], one["segments"]) == ("UCS-2", 70, 1)
    assert (two["characters"], two["segments"]) == (71, 2)
    assert "😀" in one["warning"]


def test_estimated_cost_is_messages_times_segments_times_the_price(client, login_as, opted_in):
    for _ in range(4):
        opted_in(churn_band="High")
    login_as("admin")
    data = preview(client, template=exact(200), messages="4").get_json()
    assert data["segments"] == 2 and data["price_per_segment"] == PRICE
    assert data["cost"] == pytest.approx(4 * 2 * PRICE) and data["cost_text"] == "$0.07"


def test_preview_renders_real_customers_of_the_audience(client, login_as, opted_in):
    opted_in(name="Zoë Kim", churn_band="High", tier="Gold")
    opted_in(name="Bob Low", churn_band="Low")
    login_as("admin")
    data = preview(client, template="Hi {first_name}, {tier}: {reward}. Code {code}").get_json()
    assert len(data["previews"]) == 1 and not data["example"]
    body = data["previews"][0]["body"]
    assert re.fullmatch(
        r"CornerShop: Hi Zoë, Gold: 20% discount \+ free shipping\. Code [2-9A-Z]{10}\. "
        r"Reply STOP to opt out",
        body,
    )
    assert data["ucs2_chars"] == ["ë"]  # the customer's name forces UCS-2: the warning names it


def test_unknown_placeholder_is_an_error_in_the_preview(client, login_as, opted_in):
    opted_in(churn_band="High")
    login_as("admin")
    response = preview(client, template="Hi {name}")
    assert response.status_code == 400 and "Unknown placeholder {name}" in response.get_json()["error"]


# --- exclusions shown = exclusions applied ------------------------------------------------------


def test_exclusions_shown_before_creation_equal_those_applied(client, login_as, opted_in, make_customer, store, db):
    mixed_audience(opted_in, make_customer, store)
    login_as("admin")
    shown = client.get("/campaigns/audience?band=High&store=Corner+Shop&control=34").get_json()
    assert (shown["total"], shown["eligible"], shown["control"], shown["messages"]) == (8, 3, 1, 2)
    assert {e["key"]: e["count"] for e in shown["exclusions"]} == {
        "lost": 0,
        "opted_out": 1,
        "no_opt_in": 1,
        "no_valid_phone": 1,
        "landline": 1,
        "frequency_cap": 1,
    }
    page = client.get("/campaigns?band=High&store=Corner+Shop").get_data(as_text=True)  # no-JavaScript path
    for key, n in {"opted_out": 1, "landline": 1, "frequency_cap": 1}.items():
        assert re.search(rf'data-exclusion="{key}">[^<]*<strong>{n}</strong>', page)
    response = post_form(client, "/campaigns", builder_data(control="34"))
    assert response.status_code == 302
    campaign = db.session.scalar(select(Campaign))
    assert campaign.exclusions == {e["key"]: e["count"] for e in shown["exclusions"]}
    groups = dict(
        db.session.execute(
            select(OutboxMessage.group, func.count())
            .where(OutboxMessage.campaign_id == campaign.id)
            .group_by(OutboxMessage.group)
        ).all()
    )
    assert groups == {"message": shown["messages"], "control": shown["control"]}


def test_the_churn_pages_link_lands_with_its_filter_filled_in(client, login_as, opted_in, make_customer, store):
    mixed_audience(opted_in, make_customer, store)
    login_as("admin")
    page = client.get(f"/campaigns?band=High&store={store.id}&sort=-churn_probability").get_data(as_text=True)
    assert re.search(r'<option selected value="High">|<option value="High" selected', page)
    assert re.search(r'<option selected value="Corner Shop">|<option value="Corner Shop" selected', page)
    assert re.search(r'data-audience="messages">3<', page)  # counted before anything exists


def test_a_saved_segment_is_the_audience(client, login_as, opted_in, make_customer, store, db):
    mixed_audience(opted_in, make_customer, store)
    db.session.add(
        SavedSegment(
            name="Risky", list_name="at-risk", query="band=High&sort=-churn_probability", owner_email="x@example.com"
        )
    )
    db.session.commit()
    segment = db.session.scalar(select(SavedSegment))
    login_as("admin")
    shown = client.get(f"/campaigns/audience?segment={segment.id}&band=Low").get_json()
    assert shown["filter"] == "band=High" and shown["eligible"] == 3  # the segment wins over the filters
    assert post_form(client, "/campaigns", builder_data(segment=str(segment.id), band="Low")).status_code == 302
    assert db.session.scalar(select(Campaign.audience)) == "band=High"


# --- form errors, schedule, roles -----------------------------------------------------------------


def test_errors_keep_what_was_typed_with_messages_next_to_fields(client, login_as, opted_in, db):
    opted_in(churn_band="High")
    login_as("admin")
    typed = "Hallo {vorname}, Ihr Code {code}"
    past = (datetime.now(NY) - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M")
    response = post_form(
        client, "/campaigns", builder_data(name="", template=typed, control="95", when="later", send_at=past)
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and db.session.scalar(select(func.count(Campaign.id))) == 0
    assert "Hallo {vorname}, Ihr Code {code}</textarea>" in page and 'value="95"' in page and past in page
    for field, message in (
        ("name", "Give the campaign a name."),
        ("template", "Unknown placeholder {vorname}"),
        ("control", "between 0 and 90"),
        ("send_at", "This time has passed"),
    ):
        assert re.search(rf'id="{field}-err">[^<]*{re.escape(message)}', page), field


def test_nobody_eligible_is_said_on_the_form(client, login_as, opted_in, db):
    opted_in(churn_band="High", sms_consent="opted_out")
    login_as("admin")
    response = post_form(client, "/campaigns", builder_data())
    assert response.status_code == 400 and "Nobody in this audience can be messaged" in response.get_data(as_text=True)


def test_a_local_schedule_is_stored_in_utc_and_quiet_hours_hold_it(client, login_as, opted_in, db):
    opted_in(churn_band="High")
    login_as("admin")
    day = (datetime.now(NY) + timedelta(days=3)).date()
    response = post_form(client, "/campaigns", builder_data(when="later", send_at=f"{day}T22:30"))
    assert response.status_code == 302
    campaign = db.session.scalar(select(Campaign))
    expected = datetime.combine(day, datetime.min.time().replace(hour=22, minute=30), NY).astimezone(timezone.utc)
    assert campaign.scheduled_for.replace(tzinfo=timezone.utc) == expected
    expires = campaign.expires_at.replace(tzinfo=timezone.utc).astimezone(NY)
    assert (expires.hour, expires.minute) == (23, 59)  # the offer is good for its whole last local day
    page = client.get(f"/campaigns/{campaign.id}/confirm").get_data(as_text=True)
    zone_name = datetime.combine(day, datetime.min.time(), NY).tzname()
    assert f"{day} 22:30 {zone_name}" in page and "(America/New_York)" in page  # labelled, in the store's zone
    assert f"22:30 is within them, so messages wait until {day + timedelta(days=1)} 08:00" in page


def test_marketer_drafts_but_cannot_send_or_cancel(client, login_as, opted_in, db):
    opted_in(churn_band="High")
    login_as("marketer")
    response = post_form(client, "/campaigns", builder_data(), follow_redirects=True)
    page = response.get_data(as_text=True)
    campaign = db.session.scalar(select(Campaign))
    assert campaign.status == "draft" and "An admin or a manager reviews and sends it" in page
    token = csrf_token(client, f"/campaigns/{campaign.id}/confirm")
    assert client.post(f"/campaigns/{campaign.id}/send", data={"csrf_token": token}).status_code == 403
    assert client.post(f"/campaigns/{campaign.id}/cancel", data={"csrf_token": token}).status_code == 403
    assert {r.status for r in db.session.scalars(select(OutboxMessage))} == {"pending"}


def test_send_refuses_when_the_confirmed_number_changed(client, login_as, opted_in, db):
    for _ in range(2):
        opted_in(churn_band="High")
    login_as("admin")
    post_form(client, "/campaigns", builder_data())
    campaign = db.session.scalar(select(Campaign))
    response = post_form(
        client,
        f"/campaigns/{campaign.id}/send",
        {"expected": "5"},
        token_from=f"/campaigns/{campaign.id}/confirm",
        follow_redirects=True,
    )
    assert "changed from 5 to 2" in response.get_data(as_text=True)
    assert {r.status for r in db.session.scalars(select(OutboxMessage))} == {"pending"}


def test_cancel_a_scheduled_campaign_leaves_its_messages_unsent(client, login_as, opted_in, db, store):
    for _ in range(2):
        opted_in(churn_band="High")
    login_as("manager", store=store)
    day = (datetime.now(NY) + timedelta(days=2)).date()
    post_form(client, "/campaigns", builder_data(when="later", send_at=f"{day}T10:00"))
    campaign = db.session.scalar(select(Campaign))
    post_form(
        client, f"/campaigns/{campaign.id}/send", {"expected": "2"}, token_from=f"/campaigns/{campaign.id}/confirm"
    )
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).status == "waiting"  # due in two days: nothing sent yet
    post_form(client, f"/campaigns/{campaign.id}/cancel", {}, token_from=f"/campaigns/{campaign.id}")
    db.session.expire_all()
    assert {r.status for r in db.session.scalars(select(OutboxMessage))} == {"cancelled"}
    assert all(r.sent_at is None for r in db.session.scalars(select(OutboxMessage)))


# --- the whole path -------------------------------------------------------------------------------


def test_build_confirm_send_dry_run_and_results(client, login_as, opted_in, make_customer, store, db, no_quiet_hours):
    mixed_audience(opted_in, make_customer, store)
    login_as("admin")
    builder_page = client.get("/campaigns?band=High&store=Corner+Shop").get_data(as_text=True)
    assert 'id="campaign-builder"' in builder_page and "js/campaigns.js" in builder_page
    assert "style=" not in builder_page.split("<main", 1)[1]  # CSP: no inline styles
    response = post_form(client, "/campaigns", builder_data(template="Hi {first_name}! Code {code}"))
    campaign = db.session.scalar(select(Campaign))
    assert response.headers["Location"].endswith(f"/campaigns/{campaign.id}/confirm")
    confirm = client.get(f"/campaigns/{campaign.id}/confirm").get_data(as_text=True)
    assert re.search(r'id="confirm-messages">3 messages<', confirm)
    assert re.search(r'id="confirm-segments">3 segments<', confirm) and 'id="confirm-cost">$0.02<' in confirm
    assert "CornerShop: Hi Ann0! Code " in confirm and "Run dry: record 3 messages" in confirm
    response = post_form(
        client,
        f"/campaigns/{campaign.id}/send",
        {"expected": "3"},
        token_from=f"/campaigns/{campaign.id}/confirm",
        follow_redirects=True,
    )
    page = response.get_data(as_text=True)
    assert "Sending started" in page and "3 of 3 messages finished" in page
    assert re.search(r'<div class="kpi">3</div><div class="small">sent</div>', page)
    # 3 messaged, no control group (control 0 %): the real reason, not "too few customers"
    assert "This campaign has no control group, so there is nothing to compare against." in page
    rows = db.session.scalars(select(OutboxMessage)).all()
    assert {r.status for r in rows} == {"dry-run"} and all(r.body.startswith("CornerShop: Hi Ann") for r in rows)
    actions = set(db.session.scalars(select(AuditEntry.action)))
    assert {"campaign.create", "campaign.send"} <= actions


def test_recipient_export_link_redirects_to_the_campaign(client, login_as, opted_in, db):
    opted_in(churn_band="High")
    login_as("admin")
    post_form(client, "/campaigns", builder_data())
    campaign = db.session.scalar(select(Campaign))
    response = client.get(f"/campaigns?campaign={campaign.id}")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/campaigns/{campaign.id}")
