"""Coupon redemption: once, before expiry, only for its customer at their store; from imports and by staff."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from flask import render_template_string
from flask_login import login_user
from sqlalchemy import func, select, update

from portal.models import AuditEntry, OutboxMessage, Product, PurchaseLine
from portal.services.campaigns import campaigns, redemption
from portal.services.campaigns.redemption import RedemptionError, redeem_by_staff, redeem_from_imports
from tests.conftest import post_form

SENT = datetime(2026, 3, 10, 15, 0, tzinfo=timezone.utc)  # 11:00 in New York
EXPIRES = datetime(2026, 3, 31, 3, 59, 59, tzinfo=timezone.utc)  # Mar 30, 23:59:59 in New York


@pytest.fixture()
def store(make_store):
    return make_store("Corner Shop", sender_name="CornerShop", timezone="America/New_York")


@pytest.fixture()
def other_store(make_store):
    return make_store("Uptown", timezone="America/New_York")


@pytest.fixture()
def sent_campaign(db, make_customer, store):
    """Two customers messaged (dry run) at SENT; returns (campaign, {customer: outbox row})."""
    people = [
        make_customer(store, name=n, sms_consent="opted_in", sms_consent_at=SENT - timedelta(days=90))
        for n in ("Ann Lee", "Bob Day")
    ]
    campaign = campaigns.create_campaign(
        "Spring", {}, "Hi {first_name}, code {code}", control_share=0, now=SENT - timedelta(hours=1), expires_at=EXPIRES
    )
    db.session.execute(update(OutboxMessage).values(status="dry-run", sent_at=SENT))
    db.session.commit()
    rows = {r.customer_id: r for r in db.session.scalars(select(OutboxMessage))}
    return campaign, {p: rows[p.id] for p in people}, people


def line(db, ref, customer, store, at_local, code, amount=10):
    """One imported purchase line (store-local time) carrying a coupon code."""
    product = db.session.scalar(select(Product).where(Product.external_id == "MUG"))
    if product is None:
        product = Product(external_id="MUG", name="Mug")
        db.session.add(product)
        db.session.flush()
    n = db.session.scalar(select(func.count()).where(PurchaseLine.transaction_ref == ref))
    db.session.add(
        PurchaseLine(
            transaction_ref=ref,
            product_id=product.id,
            line_no=n,
            customer_id=customer.id if customer else None,
            store_id=store.id,
            purchased_at=at_local,
            quantity=1,
            unit_price=amount,
            amount=amount,
            coupon_code=code,
            import_id=None,
        )
    )
    db.session.commit()


def fresh(db, row):
    db.session.expire_all()
    return db.session.get(OutboxMessage, row.id)


# --- staff -----------------------------------------------------------------------------------------


def test_staff_redeem_once_and_it_is_audited(db, sent_campaign):
    _campaign, rows, (ann, _bob) = sent_campaign
    code = rows[ann].coupon_code
    at = SENT + timedelta(days=2)
    redeem_by_staff(f" {code[:5].lower()}-{code[5:]} ", ann, "manager@example.com", ann.store_id, now=at)
    row = fresh(db, rows[ann])
    assert row.redeemed_at.replace(tzinfo=timezone.utc) == at and row.redeemed_by == "staff:manager@example.com"
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "coupon.redeem"))
    assert entry.user_email == "manager@example.com" and entry.detail["code"] == code
    with pytest.raises(RedemptionError, match="already redeemed"):
        redeem_by_staff(code, ann, "manager@example.com", ann.store_id, now=at + timedelta(hours=1))
    assert fresh(db, rows[ann]).redeemed_at.replace(tzinfo=timezone.utc) == at  # the first redemption stands
    refused = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "coupon.redeem_refused"))
    assert refused.detail["reason"] == "already_redeemed"


@pytest.mark.parametrize(
    "case, message",
    [
        ("expired", "expired"),
        ("other_customer", "another customer"),
        ("other_store", "only be redeemed at Corner Shop"),
        ("not_sent", "never sent"),
        ("unknown", "No campaign sent the code"),
    ],
)
def test_staff_redemption_rules(db, sent_campaign, other_store, case, message):
    _campaign, rows, (ann, bob) = sent_campaign
    code, customer, store_id, at = rows[ann].coupon_code, ann, ann.store_id, SENT + timedelta(days=1)
    if case == "expired":
        at = EXPIRES + timedelta(seconds=1)
    elif case == "other_customer":
        customer = bob
    elif case == "other_store":
        store_id = other_store.id
    elif case == "not_sent":
        db.session.execute(update(OutboxMessage).where(OutboxMessage.id == rows[ann].id).values(status="cancelled"))
        db.session.commit()
    else:
        code = "ZZZZZZZZZZ"
    with pytest.raises(RedemptionError, match=message):
        redeem_by_staff(code, customer, "admin@example.com", store_id, now=at)
    assert fresh(db, rows[ann]).redeemed_at is None


def test_a_manager_redeems_from_the_customer_page_form(client, login_as, db, sent_campaign, store):
    _campaign, rows, (ann, _bob) = sent_campaign
    db.session.execute(update(OutboxMessage).values(sent_at=datetime.now(timezone.utc) - timedelta(hours=1)))
    from portal.models import Campaign

    db.session.execute(update(Campaign).values(expires_at=datetime.now(timezone.utc) + timedelta(days=5)))
    db.session.commit()
    login_as("manager", store=store)
    response = post_form(
        client,
        "/campaigns/redeem",
        {"customer_id": ann.id, "code": rows[ann].coupon_code, "next": f"/customers/{ann.id}"},
        token_from="/campaigns",
    )
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/customers/{ann.id}")
    assert fresh(db, rows[ann]).redeemed_by == "staff:manager-corner shop@example.com"
    again = post_form(
        client,
        "/campaigns/redeem",
        {"customer_id": ann.id, "code": rows[ann].coupon_code},
        token_from="/campaigns",
        follow_redirects=True,
    )
    assert "already redeemed" in again.get_data(as_text=True)


def test_a_marketer_cannot_redeem(client, login_as, db, sent_campaign):
    _campaign, rows, (ann, _bob) = sent_campaign
    login_as("marketer")
    denied = post_form(
        client, "/campaigns/redeem", {"customer_id": ann.id, "code": rows[ann].coupon_code}, token_from="/campaigns"
    )
    assert denied.status_code == 403 and fresh(db, rows[ann]).redeemed_at is None


def test_a_manager_of_another_store_gets_404(client, login_as, db, sent_campaign, other_store):
    _campaign, rows, (ann, _bob) = sent_campaign
    login_as("manager", store=other_store)
    response = post_form(
        client, "/campaigns/redeem", {"customer_id": ann.id, "code": rows[ann].coupon_code}, token_from="/campaigns"
    )
    assert response.status_code == 404 and fresh(db, rows[ann]).redeemed_at is None


def test_the_customer_page_include_lists_open_codes(app, db, sent_campaign, make_user):
    _campaign, rows, (ann, _bob) = sent_campaign
    from portal.models import Campaign

    db.session.execute(update(Campaign).values(expires_at=datetime.now(timezone.utc) + timedelta(days=5)))
    db.session.commit()
    admin = make_user("admin")
    with app.test_request_context(f"/customers/{ann.id}"):
        login_user(admin)
        html = render_template_string(
            '{% include "campaigns/_redeem.html" ignore missing with context %}', customer=ann
        )
    assert rows[ann].coupon_code in html and 'action="/campaigns/redeem"' in html
    assert f'name="customer_id" value="{ann.id}"' in html and 'name="csrf_token"' in html


# --- imports ---------------------------------------------------------------------------------------


def test_imported_lines_redeem_once_before_expiry_for_the_customer_at_their_store(
    db, sent_campaign, store, other_store
):
    _campaign, rows, (ann, bob) = sent_campaign
    a, b = rows[ann].coupon_code, rows[bob].coupon_code
    local = datetime(2026, 3, 12, 9, 30)  # store-local wall time, as imported
    line(db, "T1", ann, store, local, a.lower())  # Ann redeems her code (any case)
    line(db, "T1", ann, store, local, a)  # a second line of the same transaction: still one redemption
    line(db, "T2", ann, store, local + timedelta(days=1), a)  # again, later: already redeemed
    line(db, "T3", ann, store, local, b)  # Bob's code on Ann's purchase
    line(db, "T4", bob, other_store, local, b)  # Bob at another store
    line(db, "T5", bob, store, datetime(2026, 3, 10, 10, 0), b)  # before the 11:00 send (local)
    line(db, "T6", bob, store, datetime(2026, 3, 31, 0, 0, 1), b)  # a second after expiry (local)
    line(db, "T7", None, store, local, b)  # anonymous sale
    line(db, "T8", bob, store, local, "NOTACODE99")
    result = redeem_from_imports()
    assert result.redeemed == 1 and result.codes == [a]
    assert result.refused == {
        "unknown_code": 1,
        "other_customer": 2,
        "other_store": 1,
        "before_send": 1,
        "expired": 1,
        "already_redeemed": 1,
    }
    ann_row, bob_row = fresh(db, rows[ann]), fresh(db, rows[bob])
    assert ann_row.redeemed_at.replace(tzinfo=timezone.utc) == datetime(2026, 3, 12, 13, 30, tzinfo=timezone.utc)
    assert ann_row.redeemed_by == "import:None:T1" and bob_row.redeemed_at is None
    audit = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "coupon.redeem_import"))
    assert audit.detail["redeemed"] == 1 and audit.detail["codes"] == [a]
    again = redeem_from_imports()  # re-running changes nothing
    assert again.redeemed == 0 and fresh(db, rows[ann]).redeemed_by == "import:None:T1"
    assert "expired" in result.summary() and result.summary().startswith("1 coupon redeemed")


def test_bobs_valid_purchase_redeems_and_an_import_is_matched_on_its_own(db, sent_campaign, store):
    from portal.models import ImportRun

    _campaign, rows, (_ann, bob) = sent_campaign
    run = ImportRun(kind="transactions", filename="t.csv", status="done")
    db.session.add(run)
    db.session.commit()
    line(db, "T9", bob, store, datetime(2026, 3, 30, 23, 59), rows[bob].coupon_code)
    assert redeem_from_imports(import_id=run.id).redeemed == 0  # the line belongs to no import
    db.session.execute(update(PurchaseLine).values(import_id=run.id))
    db.session.commit()
    assert redeem_from_imports(import_id=run.id).redeemed == 1
    assert fresh(db, rows[bob]).redeemed_by == f"import:{run.id}:T9"
    assert redemption.open_coupons(bob.id, now=SENT) == []
