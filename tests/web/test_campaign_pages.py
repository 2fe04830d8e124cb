"""Campaign pages added for "a portal a store manager enjoys": store scoping and odd input on the template
library, the builder's customer/purpose arguments, live progress and the test send (never a 500)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from portal.services.campaigns import campaigns, templates
from tests.conftest import post_form


@pytest.fixture()
def two_stores(db, make_store, make_customer):
    north, south = make_store("North", timezone="America/Chicago"), make_store("South", timezone="Europe/London")
    at = datetime.now(timezone.utc) - timedelta(days=30)
    for store, prefix in ((north, "N"), (south, "S")):
        for i in range(2):
            make_customer(store, external_id=f"{prefix}{i}", sms_consent="opted_in", sms_consent_at=at)
    south_campaign = campaigns.create_campaign("South only", {"store": "South"}, "Hi {code}", control_share=0)
    return north, south, south_campaign


def test_a_manager_reads_only_their_stores_texts(client, login_as, two_stores):
    north, south, _campaign = two_stores
    templates.save("bundle", "North pair deal {code}", north.id, "admin@example.com")
    templates.save("bundle", "South pair deal {code}", south.id, "admin@example.com")
    login_as("manager", store=north)
    page = client.get(f"/campaigns/templates?store={south.id}").get_data(as_text=True)  # asks for South
    assert "North pair deal" in page and "South pair deal" not in page


def test_another_stores_campaign_is_404_for_progress_and_test_send(client, login_as, two_stores):
    north, _south, south_campaign = two_stores
    login_as("manager", store=north)
    assert client.get(f"/campaigns/{south_campaign.id}/progress.json").status_code == 404
    response = post_form(
        client, f"/campaigns/{south_campaign.id}/test-send", {"phone": "+12025550143"}, token_from="/campaigns"
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    "args",
    [
        {"customer": "x" * 5000, "purpose": "win_back"},
        {"customer": "N0\x00", "purpose": "win_back"},
        {"customer": "' OR 1=1 --", "purpose": "'; DROP TABLE"},
        {"customer": "N0", "purpose": "win_back", "template": "Hi {nope}"},
        {"purpose": "", "customer": ""},
    ],
)
def test_odd_builder_arguments_get_a_page_not_an_error(client, login_as, two_stores, args):
    login_as("admin")
    response = client.get("/campaigns", query_string=args)
    assert response.status_code in (200, 400)
    audience = client.get("/campaigns/audience", query_string={"customer": args.get("customer", "")})
    assert audience.status_code in (200, 400)


def test_template_library_refuses_odd_posts_with_a_message(client, login_as, two_stores):
    login_as("admin")
    for data in (
        {"purpose": "nope", "body": "Hi {code}"},
        {"purpose": "win_back", "store": "99999", "body": "Hi {code}"},
        {"purpose": "win_back", "body": "x" * 1200},
        {"purpose": "win_back", "body": "   "},
    ):
        response = post_form(client, "/campaigns/templates", data)
        assert response.status_code in (302, 400, 404), data
    assert templates.template_for("win_back") == templates.PURPOSES["win_back"].default
