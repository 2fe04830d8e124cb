"""Times on the campaign pages are in the campaign's store zone, labelled, and agree with each other and the SMS."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import update

from portal.models import OutboxMessage
from portal.services.campaigns import builder, campaigns
from portal.services.clock import zone

CHICAGO = zone("America/Chicago")


@pytest.fixture()
def chicago_campaign(db, make_store, make_customer):
    store = make_store("Downtown", timezone="America/Chicago", sender_name="Downtown")
    for i in range(3):
        make_customer(
            store,
            name=f"Ann{i} Lee",
            sms_consent="opted_in",
            sms_consent_at=datetime(2025, 1, 1, tzinfo=timezone.utc),
        )
    expires = builder.expiry_utc(date(2027, 1, 3), CHICAGO)
    assert expires == datetime(2027, 1, 4, 5, 59, 59, tzinfo=timezone.utc)
    campaign = campaigns.create_campaign(
        "Winter",
        {"store": "Downtown"},
        "Hi {first_name}, {code} is good until {expires}",
        control_share=0,
        expires_at=expires,
        now=datetime(2026, 12, 1, 15, 30, tzinfo=timezone.utc),
    )
    return campaign


def test_expiry_reads_the_same_on_confirm_detail_and_in_the_sms(client, login_as, chicago_campaign, db):
    login_as("admin")  # an admin's own pages are in UTC: the campaign's times must still be its store's
    confirm = client.get(f"/campaigns/{chicago_campaign.id}/confirm").get_data(as_text=True)
    detail = client.get(f"/campaigns/{chicago_campaign.id}").get_data(as_text=True)
    for page in (confirm, detail):
        assert "2027-01-03 23:59 CST" in page
        assert "2027-01-04 05:59" not in page  # never the UTC wall time, unlabelled
    assert "(America/Chicago)" in confirm and "America/Chicago" in detail
    assert "2026-12-01 09:30 CST" in detail  # created at 15:30 UTC
    bodies = [m.body for m in db.session.query(OutboxMessage).all()]
    assert bodies and all("good until Jan 3." in b for b in bodies)  # the store's last day, not Jan 4 (UTC)


def test_sent_times_and_the_list_are_in_the_store_zone(client, login_as, chicago_campaign, db):
    db.session.execute(
        update(OutboxMessage).values(status="dry-run", sent_at=datetime(2026, 12, 2, 2, 15, tzinfo=timezone.utc))
    )
    db.session.commit()
    login_as("admin")
    detail = client.get(f"/campaigns/{chicago_campaign.id}").get_data(as_text=True)
    assert "2026-12-01 20:15 CST" in detail  # sent at 02:15 UTC the next day: still the 1st in Chicago
    assert re.search(r"window runs from 2026-12-01 20:15 CST to 2026-12-31 20:15 CST", detail)
    listing = client.get("/campaigns").get_data(as_text=True)
    row = listing[listing.index(f'data-campaign="{chicago_campaign.id}"') :]
    assert "2026-12-01 09:30 CST" in row[:3000]


def test_datetime_filter_with_a_zone_treats_naive_values_as_utc(app):
    from portal.formatting import fmt_datetime

    naive_utc = datetime(2027, 1, 4, 5, 59)
    assert fmt_datetime(naive_utc, "America/Chicago") == "2027-01-03 23:59 CST"
    assert fmt_datetime(naive_utc.replace(tzinfo=timezone.utc), CHICAGO) == "2027-01-03 23:59 CST"
    assert fmt_datetime(naive_utc, "Not/AZone") == "2027-01-04 05:59 UTC"
    assert fmt_datetime(None, CHICAGO) == "—"
