"""Results say the actual reason there is no conclusion yet, and when one can come; the list shows sent,
redeemed, revenue and lift for a page of campaigns in a fixed number of queries."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, select, update

from portal.extensions import db as _db
from portal.models import Campaign, OutboxMessage, Product, PurchaseLine
from portal.services.campaigns import campaigns, overview
from portal.services.campaigns import results as cr

T0 = datetime(2026, 3, 10, 15, 0, tzinfo=timezone.utc)  # 11:00 in New York


@pytest.fixture()
def store(make_store):
    return make_store("Corner Shop", sender_name="CornerShop", timezone="America/New_York")


@pytest.fixture()
def customers(make_customer, store):
    def make(n):
        return [
            make_customer(store, name=f"P{i} X", sms_consent="opted_in", sms_consent_at=T0 - timedelta(days=90))
            for i in range(n)
        ]

    return make


def send(db, name, share, status="dry-run"):
    campaign = campaigns.create_campaign(name, {}, "Hi {first_name} {code}", control_share=share, now=T0)
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.campaign_id == campaign.id, OutboxMessage.group == "message")
        .values(status=status, sent_at=T0)
    )
    db.session.commit()
    rows = db.session.scalars(select(OutboxMessage).where(OutboxMessage.campaign_id == campaign.id)).all()
    return campaign, [r for r in rows if r.group == "message"], [r for r in rows if r.group == "control"]


def buy(db, store, customer_id, local, amount, ref):
    product = db.session.scalar(select(Product)) or Product(external_id="P1", name="Mug")
    db.session.add(product)
    db.session.flush()
    db.session.add(
        PurchaseLine(
            transaction_ref=ref,
            product_id=product.id,
            line_no=0,
            customer_id=customer_id,
            store_id=store.id,
            purchased_at=local,
            quantity=1,
            unit_price=abs(amount),
            amount=amount,
        )
    )
    db.session.commit()


def test_nobody_bought_since_the_send_because_no_sales_were_imported(db, customers, store):
    people = customers(80)
    buy(db, store, people[0].id, datetime(2026, 3, 1, 12, 0), 20, "old")  # the latest sale on file: before
    campaign, _m, _c = send(db, "Spring", 0.5)
    r = cr.campaign_results(campaign, now=T0 + timedelta(days=3))
    assert (r.message.n, r.control.n) == (40, 40)  # both groups well above 30
    assert r.rate_text.startswith("Nobody has bought since the first message (2026-03-10 11:00 EDT)")
    assert "latest purchase on file: 2026-03-01" in r.rate_text and "Too few" not in r.rate_text
    assert r.expected == "Import the sales made since then; purchases until 2026-04-09 11:00 EDT count."
    assert r.revenue_text == ""  # nothing to say about revenue yet, and no false "too few customers"


def test_nobody_bought_although_sales_after_the_send_were_imported(db, customers, store, make_customer):
    customers(80)
    outsider = make_customer(store, name="Not In It")
    campaign, _m, _c = send(db, "Spring", 0.5)
    buy(db, store, outsider.id, datetime(2026, 3, 12, 12, 0), 20, "other")  # a sale, by someone not in it
    r = cr.campaign_results(campaign, now=T0 + timedelta(days=3))
    assert r.rate_text.startswith("Nobody in either group has bought since the first message (2026-03-10 11:00 EDT)")
    assert (
        r.expected
        == "A result can be expected as purchases come in; the measurement window ends on 2026-04-09 11:00 EDT."
    )
    done = cr.campaign_results(campaign, now=T0 + timedelta(days=40))
    assert done.expected == "The measurement window ended on 2026-04-09 11:00 EDT without enough purchases to conclude."


def test_few_buyers_and_small_groups_give_their_real_counts(db, customers, store):
    customers(80)
    campaign, messaged, control = send(db, "Spring", 0.5)
    for i, row in enumerate(messaged[:3]):
        buy(db, store, row.customer_id, datetime(2026, 3, 12, 12, 0), 10, f"m{i}")
    buy(db, store, control[0].customer_id, datetime(2026, 3, 12, 12, 0), 10, "c0")
    r = cr.campaign_results(campaign, now=T0 + timedelta(days=3))
    assert r.rate_text.startswith(
        "Not enough purchases yet to compare: 3 of 40 messaged and 1 of 40 control customers have bought; "
        "each group needs at least 5 who bought and 5 who did not."
    )
    small, _m, _c = send(db, "Tiny", 0.1)  # the same 80 (these tests never set last_sms_at): 72 and 8
    r2 = cr.campaign_results(small, now=T0 + timedelta(days=3))
    assert r2.rate_text.startswith(f"The groups are too small to conclude: {r2.message.n} messaged and {r2.control.n}")
    assert "each group needs at least 30" in r2.rate_text and "however long it runs" in r2.expected


def test_still_sending_is_said_and_no_control_group_is_named(db, customers, store):
    customers(40)
    campaign, messaged, _c = send(db, "Half", 0.0)
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_([r.id for r in messaged[:10]]))
        .values(status="pending", sent_at=None)
    )
    db.session.commit()
    r = cr.campaign_results(campaign, now=T0 + timedelta(days=1))
    assert r.rate_text.startswith("Still sending: 10 messages to go. This campaign has no control group")


def test_no_results_before_any_send_says_why(db, customers):
    customers(5)
    campaign = campaigns.create_campaign("Draft", {}, "Hi {code}", control_share=0, now=T0)
    assert cr.campaign_results(campaign) is None
    assert cr.no_results_reason(campaign).startswith("Not sent yet")
    campaign.status = "waiting"
    assert cr.no_results_reason(campaign).startswith("Waiting for its time")


class QueryCounter:
    def __init__(self):
        self.n = 0

    def __call__(self, *args, **kwargs):
        self.n += 1


def test_the_list_shows_sent_redeemed_revenue_and_lift_in_a_fixed_number_of_queries(db, customers, store):
    people = customers(120)
    main, messaged, control = send(db, "Main", 0.5)
    for i, row in enumerate(messaged[:30]):
        buy(db, store, row.customer_id, datetime(2026, 3, 12, 12, 0), 40, f"m{i}")
    for i, row in enumerate(control[:10]):
        buy(db, store, row.customer_id, datetime(2026, 3, 12, 12, 0), 25, f"c{i}")
    buy(db, store, messaged[0].customer_id, datetime(2026, 4, 20, 12, 0), 999, "late")  # after the window
    db.session.execute(
        update(OutboxMessage).where(OutboxMessage.id.in_([r.id for r in messaged[:4]])).values(redeemed_at=T0)
    )
    db.session.commit()
    now = T0 + timedelta(days=45)
    numbers = overview.campaign_numbers([main], now=now)[main.id]
    assert (numbers.recipients, numbers.control, numbers.sent, numbers.redeemed) == (60, 60, 60, 4)
    assert numbers.revenue == pytest.approx(30 * 40)
    assert numbers.lift == pytest.approx((30 / 60 - 10 / 60) * 100)
    detail = cr.campaign_results(main, now=now)  # the list agrees with the campaign page
    assert numbers.lift == pytest.approx(detail.rate.estimate * 100) and numbers.revenue == detail.message.revenue
    assert people  # (120 customers, all in this campaign)

    def count_queries(items):
        counter = QueryCounter()
        event.listen(_db.engine, "before_cursor_execute", counter)
        try:
            overview.campaign_numbers(items, now=now)
        finally:
            event.remove(_db.engine, "before_cursor_execute", counter)
        return counter.n

    one = count_queries([main])
    for i in range(5):
        extra, _m, _c = send(db, f"Extra {i}", 0.5)
    everything = db.session.scalars(select(Campaign)).all()
    assert len(everything) == 6 and count_queries(everything) == one  # not one query per campaign


def test_list_page_shows_the_numbers(client, login_as, db, customers, store):
    customers(60)
    campaign, messaged, _c = send(db, "Main", 0.5)
    buy(db, store, messaged[0].customer_id, datetime(2026, 3, 12, 12, 0), 40.5, "m0")
    db.session.execute(update(OutboxMessage).where(OutboxMessage.id == messaged[1].id).values(redeemed_at=T0))
    db.session.commit()
    login_as("admin")
    page = client.get("/campaigns").get_data(as_text=True)
    row = page[page.index(f'data-campaign="{campaign.id}"') :]
    row = row[: row.index("</tr>")]
    assert 'data-label="Sent">30<' in row and 'data-label="Redeemed">1<' in row
    assert 'data-label="Revenue">$40.50<' in row
    assert "too early" in row  # 1 buyer: no lift shown yet
