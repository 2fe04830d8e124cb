"""Creating a campaign: audience, exclusions with reasons, control group, bodies and coupon codes."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone

import phonenumbers
import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from portal.models import Campaign, OutboxMessage
from portal.services.campaigns import campaigns
from portal.services.campaigns.campaigns import CODE_ALPHABET, CampaignError, create_campaign, phone_type

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=timezone.utc)
LANDLINE = "+442079460000"  # a London fixed line (FIXED_LINE)
UK_MOBILE = "+447400123456"


@pytest.fixture()
def store(make_store):
    return make_store("Corner Shop", sender_name="CornerShop", timezone="America/New_York")


@pytest.fixture()
def opted_in(make_customer, store):
    def make(**kw):
        kw.setdefault("sms_consent", "opted_in")
        kw.setdefault("sms_consent_at", NOW - timedelta(days=100))
        kw.setdefault("sms_consent_source", "import")
        return make_customer(store, **kw)

    return make


def rows(db, campaign_id):
    return db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.campaign_id == campaign_id).order_by(OutboxMessage.customer_id)
    ).all()


def test_audience_excludes_each_reason_once_and_fixes_the_outbox(db, opted_in, make_customer, store):
    ok = [opted_in(name=f"Ann{i} Lee", tier="Gold") for i in range(4)]
    opted_in(sms_consent="opted_out")
    make_customer(store)  # consent unknown: a phone number alone implies nothing
    opted_in(phone=None)
    opted_in(phone="+1202555")  # too short
    opted_in(phone=LANDLINE)
    opted_in(last_sms_at=NOW - timedelta(days=3))  # within the 7-day cap
    ok.append(opted_in(last_sms_at=NOW - timedelta(days=8)))  # outside it
    campaign = create_campaign(
        "Spring", {"store": "Corner Shop"}, "Hi {first_name}, code {code}", control_share=0, now=NOW
    )
    assert campaign.exclusions == {
        "lost": 0,
        "opted_out": 1,
        "no_opt_in": 1,
        "no_valid_phone": 2,
        "landline": 1,
        "frequency_cap": 1,
    }
    outbox = rows(db, campaign.id)
    assert [r.customer_id for r in outbox] == [c.id for c in ok]
    assert {r.status for r in outbox} == {"pending"} and {r.group for r in outbox} == {"message"}
    assert campaign.audience == "store=Corner+Shop" and campaign.status == "draft"


def test_us_numbers_are_fixed_line_or_mobile_and_allowed_uk_mobiles_too(opted_in):
    opted_in(phone="+12025550142")
    opted_in(phone=UK_MOBILE)
    campaign = create_campaign("Both", {}, "Hello", control_share=0, now=NOW)
    assert campaign.exclusions["landline"] == 0 and len(rows(campaigns.db, campaign.id)) == 2


def test_bodies_carry_sender_placeholders_opt_out_line_and_unique_codes(db, opted_in, store):
    ann = opted_in(name="Ann Lee", tier="Gold")
    bob = opted_in(name="Bob", tier=None)
    campaign = create_campaign(
        "Gold",
        {},
        "Hi {first_name}! {tier}: {reward}. Code {code} at {store}, until {expires}",
        control_share=0,
        now=NOW,
        expires_at=datetime(2026, 4, 1, 3, 0, tzinfo=timezone.utc),
    )
    by_customer = {r.customer_id: r for r in rows(db, campaign.id)}
    body = by_customer[ann.id].body
    code = by_customer[ann.id].coupon_code
    # 03:00 UTC on April 1 is March 31 in New York: the expiry is the store's local date.
    assert body == (
        f"CornerShop: Hi Ann! Gold: 20% discount + free shipping. Code {code} at Corner Shop, "
        "until Mar 31. Reply STOP to opt out"
    )
    assert by_customer[bob.id].body.startswith("CornerShop: Hi Bob! : . Code ")
    codes = [r.coupon_code for r in by_customer.values()]
    assert len(set(codes)) == 2
    assert all(re.fullmatch(f"[{CODE_ALPHABET}]{{10}}", c) for c in codes)


def test_sender_and_stop_line_are_not_repeated_when_the_template_has_them():
    body = campaigns.render_body("CornerShop news: {code}. Reply STOP to opt out", {"code": "X"}, "CornerShop")
    assert body == "CornerShop news: X. Reply STOP to opt out"


def test_template_cannot_reach_attributes_or_unknown_placeholders(opted_in):
    opted_in()
    for template in ("Hi {first_name.__class__}", "Hi {name}", "   "):
        with pytest.raises(CampaignError):
            create_campaign("Bad", {}, template, now=NOW)


def test_control_group_is_the_share_reproducible_and_never_gets_a_body(db, opted_in):
    for _ in range(40):
        opted_in()
    first = create_campaign("A", {}, "Hello {code}", control_share=0.25, now=NOW, seed=7)
    control = [r for r in rows(db, first.id) if r.group == "control"]
    assert len(control) == 10
    assert all(r.status == "control" and r.body is None and r.coupon_code is None for r in control)
    second = create_campaign("B", {}, "Hello {code}", control_share=0.25, now=NOW - timedelta(days=30), seed=7)
    assert {r.customer_id for r in rows(db, second.id) if r.group == "control"} == {r.customer_id for r in control}
    third = create_campaign("C", {}, "Hello {code}", control_share=0.25, now=NOW - timedelta(days=60))
    assert {r.customer_id for r in rows(db, third.id) if r.group == "control"} != {r.customer_id for r in control}


def test_a_customer_cannot_be_in_a_campaign_twice(db, opted_in):
    customer = opted_in()
    campaign = create_campaign("Once", {}, "Hello", control_share=0, now=NOW)
    with pytest.raises(IntegrityError):
        db.session.execute(
            insert(OutboxMessage.__table__),
            [
                {
                    "campaign_id": campaign.id,
                    "customer_id": customer.id,
                    "group": "message",
                    "status": "pending",
                    "attempts": 0,
                }
            ],
        )
    db.session.rollback()


def test_nobody_to_message_is_refused_with_the_reasons(opted_in):
    opted_in(sms_consent="opted_out")
    with pytest.raises(CampaignError, match="1 opted out"):
        create_campaign("Empty", {}, "Hello", now=NOW)


def test_manager_audience_is_limited_to_their_store(db, make_store, make_user, opted_in, make_customer):
    other = make_store("Uptown")
    make_customer(other, sms_consent="opted_in")
    mine = opted_in()
    manager = make_user("manager", store=mine.store)
    campaign = create_campaign("Mine", {}, "Hello", control_share=0, user=manager, now=NOW)
    assert [r.customer_id for r in rows(db, campaign.id)] == [mine.id]
    assert campaign.store_id == mine.store_id and campaign.created_by == manager.email


def test_fast_phone_check_agrees_with_phonenumbers():
    rng = random.Random(3)
    numbers = [
        "+12025550142",
        UK_MOBILE,
        LANDLINE,
        "+4930123456",
        "+33612345678",
        "202-555-0142",
        "(415) 555 2671",
        "+330612345678",
        "nonsense",
        "",
    ]
    for _ in range(4000):
        cc = rng.choice(["1", "44", "49", "33", "39", "61", "91", "86", "7", "81", "34", "353", "27", "800"])
        numbers.append("+" + cc + "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 11))))
    for number in numbers:
        try:
            parsed = phonenumbers.parse(number, "US")
            valid = phonenumbers.is_valid_number(parsed)
        except phonenumbers.NumberParseException:
            valid = False
        expected = (
            (phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), phonenumbers.number_type(parsed))
            if valid
            else (None, phonenumbers.PhoneNumberType.UNKNOWN)
        )
        assert phone_type(number, "US") == expected, number


# --- CLI -------------------------------------------------------------------------------------


def test_cli_create_prints_only_the_id(runner, opted_in, db):
    opted_in(tier="Gold")
    opted_in(tier="Silver")
    result = runner.invoke(
        args=[
            "campaign",
            "create",
            "Gold only",
            "--filter",
            "tier=Gold",
            "--template",
            "Hi {first_name}, {code}",
            "--control",
            "0",
        ]
    )
    assert result.exit_code == 0, result.output
    campaign = db.session.get(Campaign, int(result.stdout.strip()))
    assert result.stdout == f"{campaign.id}\n"
    assert campaign.audience == "tier=Gold" and len(rows(db, campaign.id)) == 1


def test_cli_create_refuses_bad_template_with_exit_1(runner, opted_in):
    opted_in()
    result = runner.invoke(args=["campaign", "create", "X", "--template", "Hi {nme}"])
    assert result.exit_code == 1 and "Unknown placeholder {nme}" in result.stderr and result.stdout == ""


def test_cli_send_without_yes_and_without_stdin_refuses(runner, opted_in, db):
    opted_in()
    campaign = create_campaign("Ask", {}, "Hello", control_share=0)
    result = runner.invoke(args=["campaign", "send", str(campaign.id)], input="")
    assert result.exit_code == 1 and "not confirmed" in result.stderr
    assert {r.status for r in rows(db, campaign.id)} == {"pending"}


@pytest.fixture()
def no_quiet_hours(db):
    """The CLI runs on the real clock: switch quiet hours off (equal start and end)."""
    from portal.services import settings

    assert settings.update({"sms.quiet_start": "00:00", "sms.quiet_end": "00:00"}) == {}


def test_cli_send_dry_run_marks_rows_with_the_exact_body(runner, opted_in, db, app, no_quiet_hours):
    opted_in(name="Ann")
    campaign = create_campaign("Dry", {}, "Hi {first_name}", control_share=0)
    result = runner.invoke(args=["campaign", "send", str(campaign.id)], input="y\n")
    assert result.exit_code == 0, result.output
    assert "DRY RUN" in result.stdout and "1 dry-run" in result.stdout
    [row] = rows(db, campaign.id)
    db.session.refresh(row)
    assert row.status == "dry-run" and row.body == "CornerShop: Hi Ann. Reply STOP to opt out"
    assert row.message_sid.startswith("DRY")
    assert db.session.get(Campaign, campaign.id).status == "done"
    # A dry run rehearses the real send: it counts against the frequency cap like one (issue 21 item 12).
    assert row.customer_id and db.session.get(campaigns.Customer, row.customer_id).last_sms_at is not None
    again = campaigns.build_audience({}, now=datetime.now(timezone.utc))
    assert not again.eligible and again.exclusions["frequency_cap"] == 1


def test_cli_send_refuses_a_finished_campaign(runner, opted_in, no_quiet_hours):
    opted_in()
    campaign = create_campaign("Twice", {}, "Hello", control_share=0)
    assert runner.invoke(args=["campaign", "send", str(campaign.id), "--yes"]).exit_code == 0
    again = runner.invoke(args=["campaign", "send", str(campaign.id), "--yes"])
    assert again.exit_code == 1 and "done" in again.stderr


# --- pages -----------------------------------------------------------------------------------


def test_pages_show_progress_and_recipients_and_only_managers_send(
    client, login_as, opted_in, db, store, no_quiet_hours
):
    from tests.conftest import post_form

    opted_in(name="Ann Lee")
    campaign = create_campaign("Spring", {}, "Hi {first_name}", control_share=0)
    login_as("marketer")
    assert "Spring" in client.get("/campaigns").get_data(as_text=True)
    page = client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Dry run" in page and "CornerShop: Hi Ann. Reply STOP to opt out" in page and "Run dry" not in page
    assert post_form(client, f"/campaigns/{campaign.id}/send", {}, token_from="/campaigns").status_code == 403


def test_manager_sends_a_dry_run_from_the_page(client, login_as, opted_in, db, store, no_quiet_hours):
    from tests.conftest import post_form

    opted_in(name="Ann Lee")
    campaign = create_campaign("Spring", {"store": "Corner Shop"}, "Hi {first_name}", control_share=0)
    login_as("manager", store=store)
    assert "Run dry 1 message" in client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    response = post_form(
        client, f"/campaigns/{campaign.id}/send", {}, token_from=f"/campaigns/{campaign.id}", follow_redirects=True
    )
    assert response.status_code == 200 and "Sending started" in response.get_data(as_text=True)
    assert {r.status for r in rows(db, campaign.id)} == {"dry-run"}
