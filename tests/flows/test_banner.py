"""Every page's banner (services/flows/replies.banner): an admin's unread count and budget pauses in one query."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from portal.models import AuditEntry
from portal.services.campaigns import replies as reply_service
from portal.services.flows import replies
from tests.conftest import PASSWORD, login

NOW = datetime(2026, 10, 15, 12, tzinfo=timezone.utc)


def test_admin_banner_counts_every_stores_replies_and_only_this_months_stops(db, make_store, make_customer, make_user):
    harbor, uptown = make_store("Harbor", timezone="America/New_York"), make_store("Uptown")
    mine, theirs = make_customer(harbor, phone="+12025550101"), make_customer(uptown, phone="+12025550102")
    for i, (phone, body) in enumerate([(mine.phone, "Open Sunday?"), (theirs.phone, "Thanks!"), (mine.phone, "STOP")]):
        reply_service.record_reply({"MessageSid": f"SM{i:032d}", "From": phone, "Body": body})
    admin, manager = make_user("admin"), make_user("manager", store=harbor)
    assert replies.banner(admin, NOW) == {"unread": 2, "paused": []}  # STOP is not a reply to read
    assert replies.banner(manager, NOW) == {"unread": 1, "paused": []}
    # A stop last month (in Harbor's own time zone) no longer pauses; one this month does.
    db.session.add(AuditEntry(action="flows.budget_reached", target=f"store:{harbor.id}", at=NOW - timedelta(days=20)))
    db.session.commit()
    assert replies.banner(admin, NOW)["paused"] == []
    db.session.add(AuditEntry(action="flows.budget_reached", target=f"store:{uptown.id}", at=NOW - timedelta(days=2)))
    db.session.commit()
    paused = replies.banner(admin, NOW)["paused"]
    assert [p["store"].name for p in paused] == ["Uptown"]
    assert replies.banner(manager, NOW)["paused"] == []  # managers never see the budget banner


def test_admin_page_shows_the_unread_count(client, make_store, make_customer, make_user):
    store = make_store("Harbor")
    customer = make_customer(store, phone="+12025550103")
    reply_service.record_reply({"MessageSid": "SM" + "9" * 32, "From": customer.phone, "Body": "Hello?"})
    login(client, make_user("admin").email, PASSWORD)
    assert "1 unread reply from customers" in client.get("/customers").get_data(as_text=True)
