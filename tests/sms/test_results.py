"""Campaign results: the uplift arithmetic against hand-worked examples, the purchase window, delivery counts, cost."""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from portal.models import Campaign, ConsentEvent, OutboxMessage, Product, PurchaseLine
from portal.services.campaigns import campaigns
from portal.services.campaigns import results as cr
from portal.sms_text import segment_info

T0 = datetime(2026, 3, 10, 15, 0, tzinfo=timezone.utc)  # first send: 11:00 in New York (EDT)


# --- the arithmetic, worked by hand ---------------------------------------------------------------


def test_difference_of_proportions_hand_worked():
    # 80 of 200 messaged bought (40 %), 20 of 100 controls (20 %): d = 0.20,
    # se = sqrt(.4*.6/200 + .2*.8/100) = sqrt(.0012 + .0016) = 0.052915, margin = 1.96 * se = 0.10371.
    diff = cr.proportion_difference(80, 200, 20, 100)
    assert diff.estimate == pytest.approx(0.20)
    assert diff.se == pytest.approx(0.0529150, abs=1e-6)
    assert diff.margin == pytest.approx(0.103712, abs=1e-5)
    assert (diff.low, diff.high) == (pytest.approx(0.096288, abs=1e-5), pytest.approx(0.303712, abs=1e-5))
    assert cr.rate_sentence(diff, True, 200, 100) == (
        "Messaged customers bought 20.0 points more often than the control group, give or take 10.4."
    )


def test_welch_difference_of_means_hand_worked():
    # messaged [10, 20, 30, 40]: mean 25, s² = 500/3; control [5, 5, 20]: mean 10, s² = 75.
    # se² = (500/3)/4 + 75/3 = 41.667 + 25 = 66.667 -> se = 8.1650;
    # df = 66.667² / (41.667²/3 + 25²/2) = 4444.4 / (578.70 + 312.5) = 4.9870; t(.975, 4.987) ≈ 2.5734.
    n1, m1, v1 = cr.summarise([10, 20, 30, 40])
    n0, m0, v0 = cr.summarise([5, 5, 20])
    assert (n1, m1, v1, n0, m0, v0) == (4, 25, pytest.approx(500 / 3), 3, 10, 75)
    diff = cr.mean_difference(n1, m1, v1, n0, m0, v0)
    assert diff.estimate == 15 and diff.se == pytest.approx(math.sqrt(200 / 3))
    assert diff.df == pytest.approx(4.9870, abs=1e-3)
    assert diff.margin == pytest.approx(2.5734 * 8.1650, abs=0.02)
    assert diff.includes_zero  # 15 ± 21: could be chance
    text = cr.revenue_sentence(diff, True, 4, 3)
    assert text.startswith(
        "Messaged customers spent $15.00 more per customer than the control group, give or take $21.01."
    )
    assert "includes zero, so this could be chance" in text


def test_sentences_say_less_often_and_too_small():
    worse = cr.proportion_difference(10, 100, 20, 100)
    assert cr.rate_sentence(worse, True, 100, 100).startswith("Messaged customers bought 10.0 points less often")
    assert cr.rate_sentence(worse, False, 12, 3).startswith("Too few customers to conclude: 12 messaged and 3")


# --- a campaign's results from the database ---------------------------------------------------------


@pytest.fixture()
def store(make_store):
    return make_store("Corner Shop", sender_name="CornerShop", timezone="America/New_York")


@pytest.fixture()
def sent(db, make_customer, store):
    """60 customers split 30/30, the messaged half sent at T0; returns (campaign, messaged, control)."""
    for i in range(60):
        make_customer(store, name=f"P{i} X", sms_consent="opted_in", sms_consent_at=T0 - timedelta(days=90))
    campaign = campaigns.create_campaign(
        "Spring", {}, "Hi {first_name} {code}", control_share=0.5, now=T0 - timedelta(hours=2)
    )
    db.session.execute(
        update(OutboxMessage).where(OutboxMessage.group == "message").values(status="dry-run", sent_at=T0)
    )
    db.session.commit()
    rows = db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    return (campaign, [r for r in rows if r.group == "message"], [r for r in rows if r.group == "control"])


def buy(db, store, row, local, amount, ref):
    product = db.session.scalar(select(Product)) or Product(external_id="P1", name="Mug")
    db.session.add(product)
    db.session.flush()
    db.session.add(
        PurchaseLine(
            transaction_ref=ref,
            product_id=product.id,
            line_no=0,
            customer_id=row.customer_id,
            store_id=store.id,
            purchased_at=local,
            quantity=1,
            unit_price=abs(amount),
            amount=amount,
        )
    )
    db.session.commit()


def test_purchases_in_the_window_for_both_groups(db, sent, store):
    campaign, messaged, control = sent
    assert (len(messaged), len(control)) == (30, 30)
    inside = datetime(2026, 3, 20, 12, 0)  # store-local wall times
    for i, row in enumerate(messaged[:12]):
        buy(db, store, row, inside, 30, f"M{i}")
    buy(db, store, messaged[0], inside, -10, "M-return")  # a return nets out
    buy(db, store, messaged[20], datetime(2026, 4, 9, 11, 0), 99, "M-late")  # 11:00 local on day 30: outside
    buy(db, store, messaged[21], datetime(2026, 4, 9, 10, 59), 50, "M-last")  # a minute before the end: inside
    for i, row in enumerate(control[:6]):
        buy(db, store, row, inside, 25, f"C{i}")
    buy(db, store, control[10], datetime(2026, 3, 10, 10, 59), 70, "C-early")  # before the 11:00 send
    results = cr.campaign_results(db.session.get(Campaign, campaign.id), now=T0 + timedelta(days=45))
    m, c = results.message, results.control
    assert (m.n, m.buyers, m.revenue) == (30, 13, pytest.approx(12 * 30 - 10 + 50))
    assert (c.n, c.buyers, c.revenue) == (30, 6, pytest.approx(150))
    assert results.complete and results.days == 30 and results.rate_enough
    # 13/30 vs 6/30: d = 0.2333, se = sqrt(.4333*.5667/30 + .2*.8/30) = sqrt(.0081852 + .0053333) = 0.11627,
    # margin = 1.96 * se = 0.22788: the interval (0.5 to 46.1 points) just excludes zero.
    assert results.rate.estimate == pytest.approx(7 / 30)
    assert results.rate.margin == pytest.approx(0.22788, abs=1e-4) and not results.rate.includes_zero
    assert results.rate_text.startswith(
        "Messaged customers bought 23.3 points more often than the control group, give or take 22.8."
    )
    assert results.revenue.estimate == pytest.approx(400 / 30 - 5)


def test_results_so_far_and_before_any_send(db, sent, store):
    campaign, messaged, _control = sent
    partial = cr.campaign_results(campaign, now=T0 + timedelta(days=10, hours=1))
    assert not partial.complete and partial.days_elapsed == 10
    # 30 and 30 customers but no purchase on file at all: say so, not "too few customers"
    assert partial.rate_text.startswith("Nobody has bought since the first message (2026-03-10 11:00 EDT)")
    assert "latest purchase on file: none" in partial.rate_text and "Too few" not in partial.rate_text
    assert partial.expected == "Import the sales made since then; purchases until 2026-04-09 11:00 EDT count."
    db.session.execute(update(OutboxMessage).values(sent_at=None))
    db.session.commit()
    assert cr.campaign_results(campaign) is None


def test_delivery_counts_opt_outs_and_redemptions(db, sent):
    campaign, messaged, control = sent
    for row, status in zip(messaged, ("delivered", "delivered", "failed", "undelivered")):
        db.session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(status=status))
    db.session.execute(
        update(OutboxMessage).where(OutboxMessage.id == messaged[5].id).values(redeemed_at=T0 + timedelta(days=1))
    )
    db.session.add(
        ConsentEvent(
            customer_id=messaged[6].customer_id,
            status="opted_out",
            source="sms_keyword",
            keyword="STOP",
            effective_at=T0 + timedelta(minutes=5),
        )
    )
    db.session.add(
        ConsentEvent(
            customer_id=control[0].customer_id,
            status="opted_out",
            source="staff",
            effective_at=T0 + timedelta(minutes=5),
        )
    )  # not messaged: not counted
    db.session.commit()
    d = cr.delivery_counts(campaign.id, T0)
    # sent = accepted by Twilio (26 dry-run + 2 delivered + 1 undelivered); failed = failed + undelivered.
    assert d == {"messages": 30, "sent": 29, "delivered": 2, "failed": 2, "opted_out": 1, "redeemed": 1}


def test_confirm_cost_counts_every_body_exactly(db, make_customer, store):
    for name in ("Ann", "Łukasz", "Zoë", "Bob"):
        make_customer(store, name=name, sms_consent="opted_in", sms_consent_at=T0)
    campaign = campaigns.create_campaign("Names", {}, "Hi {first_name}! " + "x" * 130 + " {code}", control_share=0)
    bodies = db.session.scalars(select(OutboxMessage.body)).all()
    cost = cr.outbox_cost(campaign.id)
    # 184 GSM-7 characters: 2 parts of 153; "Łukasz" (187) and "Zoë" (184) go UCS-2: 3 parts of 67 each.
    assert cost.messages == 4 and cost.segments == sum(segment_info(b).segments for b in bodies) == 2 + 3 + 3 + 2
    assert cost.ucs2_messages == 2 and cost.ucs2_chars == ["Ł", "ë"]
    assert cost.cost == pytest.approx(10 * 0.0083)


def test_recipient_csv_has_status_and_redemption(client, login_as, db, sent):
    campaign, messaged, _control = sent
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == messaged[0].id)
        .values(redeemed_at=T0 + timedelta(days=1), redeemed_by="staff:x")
    )
    db.session.commit()
    login_as("admin")
    page = client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert "campaign-recipients" in page and 'name="campaign" value="%d"' % campaign.id in page
    response = client.get(f"/exports/campaign-recipients?campaign={campaign.id}&format=csv")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 60 and {"group", "status", "coupon_code", "redeemed_at"} <= set(rows[0])
    redeemed = [r for r in rows if r["redeemed_at"]]
    assert [r["coupon_code"] for r in redeemed] == [messaged[0].coupon_code] and redeemed[0]["status"] == "dry-run"
