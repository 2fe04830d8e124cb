"""The customer page in a real browser, on a phone (390 px) and at a desk (1366 px): the story first (status, tier,
risk, value), then the timeline, the consent / coupon / erase boxes last, and "Send an offer" at hand.

A server of its own (gunicorn over a fresh SQLite file) with one customer who has a bit of everything: two
baskets, a dry-run message, a consent event and a tier change. Screenshots: docs/screenshots/customer-story*.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ADMIN, SCREENSHOTS, _run, browser_page, gunicorn, server_env

pytestmark = pytest.mark.browser

SEED = r'''
from datetime import datetime, timezone
from decimal import Decimal
from app import create_app
from portal.extensions import db
from portal.models import Campaign, ConsentEvent, Customer, OutboxMessage, Product, PurchaseLine, Store, TierChange

utc = timezone.utc
app = create_app()
with app.app_context():
    store = Store(name="Harbor", timezone="America/Chicago")
    db.session.add(store)
    db.session.flush()
    ann = Customer(external_id="C02351", name="Ann Story", phone="+12025550111", email="ann@example.com",
                   store_id=store.id, sms_consent="opted_in", sms_consent_at=datetime(2026, 9, 1, tzinfo=utc),
                   sms_consent_source="signed form", lifecycle="At risk", tier="Silver", churn_band="High",
                   churn_probability=0.81, churn_reasons=["no purchase for 120 days, usually every 20"],
                   monetary=Decimal("250.00"), frequency=12, recency=120, p_alive=0.19,
                   expected_purchases_90d=0.4, clv_12m=Decimal("35.10"), avg_purchase_gap_days=20.0,
                   store_visit_frequency=12, num_unique_products=8, active_days=400,
                   scored_at=datetime(2026, 10, 31, tzinfo=utc))
    tea = Product(external_id="P-TEA", name="Green tea")
    db.session.add_all([ann, tea])
    db.session.flush()
    for ref, day in (("T-1", 1), ("T-2", 3)):
        db.session.add(PurchaseLine(transaction_ref=ref, product_id=tea.id, customer_id=ann.id, store_id=store.id,
                                    purchased_at=datetime(2026, 7, day, 10), quantity=Decimal(2),
                                    unit_price=Decimal("4.50"), amount=Decimal("9.00")))
    db.session.add(ConsentEvent(customer_id=ann.id, status="opted_in", source="signed form",
                                effective_at=datetime(2026, 9, 1, tzinfo=utc)))
    rehearsal = Campaign(name="Autumn win-back", template="Hi", created_at=datetime(2026, 10, 5, tzinfo=utc))
    db.session.add(rehearsal)
    db.session.flush()
    db.session.add(OutboxMessage(campaign_id=rehearsal.id, customer_id=ann.id, group="message", phone=ann.phone,
                                 body="Hi Ann, 15% off this week", status="dry-run",
                                 sent_at=datetime(2026, 10, 5, 15, tzinfo=utc)))
    db.session.add(TierChange(customer_id=ann.id, at=datetime(2026, 10, 31, tzinfo=utc), old_tier="Gold",
                              new_tier="Silver", reason="retrain"))
    db.session.commit()
    print(ann.id)
'''


@pytest.fixture(scope="module")
def story_server(chromium_path, tmp_path_factory):
    tmp: Path = tmp_path_factory.mktemp("story")
    port, env = server_env(tmp, "story")
    _run(["-m", "flask", "init-db"], env)
    customer_id = int(_run(["-"], env, input=SEED).stdout.strip().splitlines()[-1])
    with gunicorn(env, tmp, port, "story", 60) as base:
        yield base, customer_id


def _top(page, selector: str) -> float:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not displayed"
    return box["y"]


@pytest.mark.parametrize("width", [390, 1366])
def test_customer_page_reads_top_to_bottom(browser, story_server, width):
    base, customer_id = story_server
    page = browser_page(browser, base, width=width, height=900)
    try:
        page.goto("/login")
        page.get_by_label("E-mail").fill(ADMIN[0])
        page.get_by_label("Password").fill(ADMIN[1])
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/login" not in url)
        page.goto(f"/customers/{customer_id}")
        expect(page.get_by_role("heading", name=re.compile("Ann Story"))).to_be_visible()

        status = _top(page, "#lifecycle-status")
        tier = _top(page, "h2:has-text('Loyalty tier')")
        risk = _top(page, "h2:has-text('Churn risk')")
        value = _top(page, "h2:has-text('Predicted value')")
        timeline = _top(page, "#timeline")
        boxes = [_top(page, sel) for sel in ("#consent-box", "#coupon-box", "#erase-box")]
        assert status < tier <= risk < value < timeline < min(boxes), (status, tier, risk, value, timeline, boxes)
        if width == 390:  # one column on a phone: tier above risk, and the boxes stacked in order
            assert tier < risk and boxes == sorted(boxes)

        events = page.locator("#timeline-list > li")
        expect(events).to_have_count(5)
        kinds = [events.nth(i).get_attribute("data-kind") for i in range(5)]
        assert kinds == ["tier", "message", "consent", "purchase", "purchase"]
        expect(events.nth(1)).to_contain_text("dry run (not sent)")

        offer = page.locator("#send-offer")
        expect(offer).to_be_visible()
        href = offer.get_attribute("href")
        assert "customer=C02351" in href and "purpose=win_back" in href

        # The story itself never pans sideways (the whole document, navigation included, is test_layout's).
        overflow = page.evaluate(
            """() => Array.from(document.querySelectorAll('#main *'))
                .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
                .map(e => e.tagName + '#' + e.id + '.' + e.className)"""
        )
        assert not overflow, f"wider than {width} px: {overflow[:5]}"
        assert not page.js_errors, page.js_errors
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"customer-story{'-phone' if width == 390 else ''}.png"), full_page=True)
    finally:
        page.context.close()
