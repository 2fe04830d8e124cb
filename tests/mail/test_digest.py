"""The weekly digest: a real SMTP server receives it once, with both parts, headers and absolute links,
and a store manager's digest holds only their store's numbers."""

from __future__ import annotations

import re

from sqlalchemy import select

from portal import jobs
from portal.models import Job, MailMessage
from portal.services.mail import digest, preferences
from tests.mail.conftest import parts, subject
from tests.mail.helpers import buy

# Monday 30 November 2026, 08:30 in New York (the stores' zone) = 13:30 UTC: the default digest hour.
MONDAY_0830 = "2026-11-30T13:30:00+00:00"
BASE = "https://loyalist.example.com"


def _two_stores(make_store, make_customer):
    downtown = make_store("Downtown")
    uptown = make_store("Uptown")
    a = make_customer(downtown, name="Ann Returning")
    b = make_customer(downtown, name="Ben New")
    c = make_customer(uptown, name="Cat Uptown")
    buy(a, downtown, "2026-11-10 12:00", "20.00")  # before both weeks: Ann is a returning customer
    buy(a, downtown, "2026-11-18 12:00", "80.00")  # the week before
    buy(a, downtown, "2026-11-25 12:00", "100.00")  # this week
    buy(b, downtown, "2026-11-26 12:00", "50.00")  # this week, first purchase
    buy(c, uptown, "2026-11-25 12:00", "1000.00")  # another store's week
    return downtown, uptown


def _run_digest(now=MONDAY_0830):
    job = jobs.enqueue(digest.JOB, "Weekly digests", now=now)
    jobs.db.session.expire_all()
    assert jobs.db.session.get(Job, job.id).status == "done", jobs.db.session.get(Job, job.id).message
    return job


def test_digest_arrives_once_with_both_parts_headers_and_absolute_links(
    app, db, smtp, make_store, make_customer, make_user
):
    downtown, _ = _two_stores(make_store, make_customer)
    manager = make_user("manager", store=downtown)

    _run_digest()
    _run_digest()  # the hourly job again (or cron's send-due): the ISO week's key is taken

    received = smtp.to(manager.email)
    assert len(received) == 1
    message = received[0]
    assert message["From"] == "Loyalist <alerts@shop.example>"
    assert message["To"] == manager.email
    assert subject(message) == "Your week at Downtown: 2 customers, revenue $150.00"
    unsubscribe = str(message["List-Unsubscribe"]).strip()  # long headers are folded
    assert re.fullmatch(rf"<{re.escape(BASE)}/mail/unsubscribe/[\w.-]+>", unsubscribe), unsubscribe
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    body = parts(message)
    assert set(body) == {"text/plain", "text/html"}
    text, html = body["text/plain"], body["text/html"]
    assert "Revenue: $150.00 (week before $80.00, +88 %)" in text
    assert "Customers who bought: 2 (week before 1, +100 %)" in text
    assert "Repeat rate: 50 %" in text
    assert "$150.00" in html and "Repeat rate" in html
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert hrefs and all(h.startswith(BASE + "/") for h in hrefs), hrefs
    assert f"{BASE}/account/mail" in text and unsubscribe.strip("<>") in text
    assert "<img" not in html  # no tracking pixels, no images at all

    row = db.session.scalar(select(MailMessage).where(MailMessage.user_id == manager.id))
    assert (row.kind, row.event_key, row.status) == ("digest", "digest:2026-W49", "sent")
    assert row.sent_at is not None


def test_a_store_managers_digest_holds_only_their_store(app, db, smtp, make_store, make_customer, make_user):
    downtown, uptown = _two_stores(make_store, make_customer)
    manager = make_user("manager", store=downtown)
    other = make_user("manager", email="manager-uptown@example.com", store=uptown)
    admin = make_user("admin")

    _run_digest()

    mine = parts(smtp.to(manager.email)[0])["text/plain"]
    assert "Revenue: $150.00" in mine and "1,000" not in mine and "Cat Uptown" not in mine
    theirs = parts(smtp.to(other.email)[0])["text/plain"]
    assert "Revenue: $1,000.00" in theirs and "150.00" not in theirs
    everything = smtp.to(admin.email)[0]
    assert subject(everything) == "Your week at all stores: 3 customers, revenue $1,150.00"


def test_digest_waits_for_the_chosen_day_and_hour_in_the_store_zone(
    app, db, smtp, make_store, make_customer, make_user
):
    downtown, _ = _two_stores(make_store, make_customer)
    manager = make_user("manager", store=downtown)
    preferences.save(manager, {k: True for k in preferences.KINDS}, weekday=1, hour=9)  # Tuesday 09:00

    _run_digest(MONDAY_0830)
    _run_digest("2026-12-01T13:59:00+00:00")  # Tuesday 08:59 in New York: not yet
    assert smtp.to(manager.email) == []
    _run_digest("2026-12-01T14:00:00+00:00")  # Tuesday 09:00 in New York
    assert len(smtp.to(manager.email)) == 1


def test_no_digest_for_a_user_who_switched_it_off(app, db, smtp, make_store, make_customer, make_user):
    downtown, _ = _two_stores(make_store, make_customer)
    manager = make_user("manager", store=downtown)
    preferences.save(manager, {"digest": False, "risk": True}, weekday=0, hour=8)
    _run_digest()
    assert smtp.to(manager.email) == []


def test_the_digest_reports_tiers_bands_risk_campaigns_and_dead_stock(
    app, db, smtp, make_store, make_customer, make_user
):
    from datetime import datetime, timezone
    from decimal import Decimal

    from portal.models import Campaign, MailEvent, OutboxMessage, StockLevel, TierChange
    from portal.services.mail import events
    from tests.mail.helpers import product

    downtown, uptown = _two_stores(make_store, make_customer)
    manager = make_user("manager", store=downtown)
    during = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)
    risky = make_customer(downtown, churn_band="High", churn_probability=0.8, clv_12m=Decimal("500.00"))
    make_customer(uptown, churn_band="High", churn_probability=0.9, clv_12m=Decimal("9999.00"))
    db.session.add(TierChange(customer_id=risky.id, at=during, old_tier="Silver", new_tier="Gold", reason="rescored"))
    events.record("bands", "bands:test", downtown.id, {"moves": {"Low→High": 3}})
    db.session.scalar(select(MailEvent).where(MailEvent.event_key == "bands:test")).created_at = during
    campaign = Campaign(name="Winter win-back", store_id=downtown.id, template="x", status="waiting", started_at=during)
    db.session.add(campaign)
    db.session.commit()
    db.session.add(
        OutboxMessage(
            campaign_id=campaign.id, customer_id=risky.id, group="message", status="delivered", sent_at=during
        )
    )
    slow = product("SLOW", "5")
    db.session.add(StockLevel(product_id=slow.id, store_id=downtown.id, initial_stock=100, total_sold=10))
    db.session.commit()
    buy(risky, downtown, "2026-11-27 10:00", "15.00", item=slow, quantity="3")

    _run_digest()

    text = parts(smtp.to(manager.email)[0])["text/plain"]
    assert "Tiers: 1 up, 0 down\n- Silver → Gold: 1" in text
    assert "Churn-risk bands: Low→High 3" in text
    assert "Value at risk: $400.00 across 1 High-risk customer" in text  # 0.8 × $500; Uptown's left out
    assert "- Winter win-back (waiting): 1 message sent, 0 coupons redeemed (0.0 %)" in text
    assert f"https://loyalist.example.com/campaigns/{campaign.id}" in text
    assert "Dead stock sold: 3 units of 1 slow-moving product, $15.00" in text
