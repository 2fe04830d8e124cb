"""Live progress: the detail page's "N of M finished" comes from a JSON endpoint that reads the outbox, so it
moves with every message while the job runs (not only when it ends)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN
from sqlalchemy import update

from portal.models import Campaign
from portal.services.campaigns import campaigns
from portal.services.campaigns.sending import SendOptions, send_campaign
from portal.sms import TwilioGateway

NOW = datetime.now(timezone.utc)


@pytest.fixture()
def campaign(db, make_store, make_customer):
    store = make_store("Corner Shop", sender_name="CornerShop", timezone="America/New_York")
    for i in range(6):
        make_customer(store, name=f"P{i} X", sms_consent="opted_in", sms_consent_at=NOW - timedelta(days=90))
    return campaigns.create_campaign("Live", {}, "Hi {first_name} {code}", control_share=0)


class WatchingGateway:
    """The real Twilio client against the fake, asking the progress endpoint before each send."""

    name = "twilio"

    def __init__(self, inner, client, url):
        self.inner, self.client, self.url, self.seen = inner, client, url, []

    def send(self, to, body, status_callback=None):
        self.seen.append(self.client.get(self.url).get_json())
        return self.inner.send(to, body, status_callback)

    def find_sent(self, to, body, since):
        return self.inner.find_sent(to, body, since)


def test_progress_moves_message_by_message_while_the_campaign_sends(client, login_as, campaign, fake_twilio, db):
    login_as("admin")
    url = f"/campaigns/{campaign.id}/progress.json"
    before = client.get(url).get_json()
    assert (before["done"], before["messages"], before["percent"], before["moving"]) == (0, 6, 0, False)
    assert before["text"] == "0 of 6 messages finished."
    real = TwilioGateway(ACCOUNT_SID, AUTH_TOKEN, from_number="+15005550006", api_base=fake_twilio.base_url)
    watcher = WatchingGateway(real, client, url)
    options = SendOptions(quiet_start="00:00", quiet_end="00:00", rate_per_second=1000, batch_size=2)
    send_campaign(campaign.id, watcher, options)
    done_seen = [p["done"] for p in watcher.seen]
    assert done_seen == [0, 1, 2, 3, 4, 5]  # one more finished before each next send
    assert all(p["moving"] and p["status"] == "sending" for p in watcher.seen)
    assert all(p["counts"].get("sending") == 1 for p in watcher.seen)  # the claimed row shows as it goes out
    after = client.get(url).get_json()
    assert (after["done"], after["percent"], after["status"], after["moving"]) == (6, 100, "done", False)
    assert len(fake_twilio.messages) == 6


def test_the_detail_page_polls_only_while_sending(client, login_as, campaign, db):
    login_as("admin")
    page = client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert 'data-progress-url="/campaigns/%d/progress.json"' % campaign.id in page
    assert 'data-moving="no"' in page and "js/campaign_progress.js" in page
    db.session.execute(update(Campaign).where(Campaign.id == campaign.id).values(status="sending"))
    db.session.commit()
    page = client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert re.findall(r"data-moving=\"[a-z]+\"", page) == ['data-moving="yes"']


def test_progress_of_another_stores_campaign_is_404(client, login_as, campaign, make_store):
    login_as("manager", store=make_store("Elsewhere"))
    assert client.get(f"/campaigns/{campaign.id}/progress.json").status_code == 404
