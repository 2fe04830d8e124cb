"""Erasing a customer: personal data gone, statistics and the consent record kept, never exported again."""

import csv
import io
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.models import AuditEntry, Campaign, ConsentEvent, Customer, OutboxMessage, Product, PurchaseLine
from portal.services.campaigns.campaigns import build_audience
from tests.conftest import login, post_form


@pytest.fixture()
def ann(db, make_store, make_customer):
    """A customer with a purchase, an opt-in on record and one pending and one sent campaign message."""
    store = make_store("Alpha")
    ann = make_customer(
        store=store,
        external_id="C-ANN",
        name="Ann Example",
        phone="+12025550101",
        email="ann@example.com",
        sms_consent="opted_in",
    )
    other = make_customer(store=store, external_id="C-BOB", name="Bob", phone="+12025550102", sms_consent="opted_in")
    product = Product(external_id="P1", name="Tea")
    db.session.add(product)
    db.session.flush()
    db.session.add(
        PurchaseLine(
            transaction_ref="T1",
            product_id=product.id,
            customer_id=ann.id,
            store_id=store.id,
            purchased_at=datetime(2026, 1, 5, 10),
            quantity=Decimal("2"),
            unit_price=Decimal("3.50"),
            amount=Decimal("7.00"),
        )
    )
    db.session.add(ConsentEvent(customer_id=ann.id, status="opted_in", source="signed form"))
    pending = Campaign(name="Spring", store_id=store.id, template="Hi {first_name}", status="sending")
    done = Campaign(name="Winter", store_id=store.id, template="Hi {first_name}", status="done")
    db.session.add_all([pending, done])
    db.session.flush()
    db.session.add_all(
        [
            OutboxMessage(
                campaign_id=pending.id,
                customer_id=ann.id,
                group="message",
                phone=ann.phone,
                body="Hi Ann",
                status="pending",
            ),
            OutboxMessage(
                campaign_id=pending.id,
                customer_id=other.id,
                group="message",
                phone=other.phone,
                body="Hi Bob",
                status="pending",
            ),
            OutboxMessage(
                campaign_id=done.id,
                customer_id=ann.id,
                group="message",
                phone=ann.phone,
                body="Hi Ann",
                status="delivered",
                message_sid="SM1",
            ),
        ]
    )
    db.session.commit()
    return {"ann": ann, "bob": other, "store": store, "pending": pending, "done": done}


def _erase(client, customer_id, confirm=True):
    data = {"confirm": "y"} if confirm else {}
    return post_form(client, f"/customers/{customer_id}/erase", data, token_from=f"/customers/{customer_id}")


def test_admin_erases_customer_and_keeps_statistics_and_consent(client, login_as, db, ann):
    admin = login_as("admin")
    customer_id = ann["ann"].id
    response = _erase(client, customer_id)
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/customers/{customer_id}")

    db.session.expire_all()
    erased = db.session.get(Customer, customer_id)
    assert erased.name is None and erased.phone is None and erased.email is None
    assert erased.external_id.startswith("erased-") and "ANN" not in erased.external_id
    assert erased.erased_at is not None
    # Purchases stay (anonymously linked) and the consent history stays as the legal record.
    assert (
        db.session.scalar(select(func.count()).select_from(PurchaseLine).where(PurchaseLine.customer_id == customer_id))
        == 1
    )
    assert (
        db.session.scalar(select(func.count()).select_from(ConsentEvent).where(ConsentEvent.customer_id == customer_id))
        == 1
    )
    # The unsent message is cancelled; Bob's is untouched; the delivered one keeps its status but not the number.
    rows = {(r.campaign_id, r.customer_id): r for r in db.session.scalars(select(OutboxMessage))}
    assert rows[(ann["pending"].id, customer_id)].status == "cancelled"
    assert rows[(ann["pending"].id, ann["bob"].id)].status == "pending"
    delivered = rows[(ann["done"].id, customer_id)]
    assert delivered.status == "delivered" and delivered.phone is None and delivered.body is None

    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "customer.erase"))
    assert entry.user_email == admin.email and entry.target == f"customer:{customer_id}"
    flat = repr(entry.detail) + (entry.target or "")
    for secret in ("Ann", "+12025550101", "ann@example.com", "C-ANN"):
        assert secret not in flat

    page = client.get(f"/customers/{customer_id}").get_data(as_text=True)
    assert "erased" in page and "Ann Example" not in page and "+12025550101" not in page
    assert "Erase customer" not in page  # no second erasure offered


def test_erasing_twice_is_refused_with_a_message(client, login_as, db, ann):
    login_as("admin")
    customer_id = ann["ann"].id
    _erase(client, customer_id)
    # The form is gone from the page, so take the token from the list page for the second attempt.
    second = post_form(
        client, f"/customers/{customer_id}/erase", {"confirm": "y"}, token_from="/customers", follow_redirects=True
    )
    assert "already been erased" in second.get_data(as_text=True)
    assert (
        db.session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "customer.erase"))
        == 1
    )


def test_erase_needs_confirmation(client, login_as, db, ann):
    login_as("admin")
    response = _erase(client, ann["ann"].id, confirm=False)
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Customer, ann["ann"].id).erased_at is None
    page = client.get(f"/customers/{ann['ann'].id}").get_data(as_text=True)
    assert "Tick the box to confirm" in page


@pytest.mark.parametrize("role", ["manager", "marketer"])
def test_only_admins_can_erase(client, make_user, db, ann, role):
    user = make_user(role, store=ann["store"])
    login(client, user.email)
    page = client.get(f"/customers/{ann['ann'].id}").get_data(as_text=True)
    assert "Erase customer" not in page
    response = post_form(
        client, f"/customers/{ann['ann'].id}/erase", {"confirm": "y"}, token_from=f"/customers/{ann['ann'].id}"
    )
    assert response.status_code == 403
    db.session.expire_all()
    assert db.session.get(Customer, ann["ann"].id).name == "Ann Example"


def test_erase_without_csrf_token_is_refused(client, login_as, db, ann):
    login_as("admin")
    response = client.post(f"/customers/{ann['ann'].id}/erase", data={"confirm": "y"})
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.get(Customer, ann["ann"].id).erased_at is None


def test_erased_customer_is_never_exported_nor_targeted(client, login_as, runner, db, ann, tmp_path):
    login_as("admin")
    _erase(client, ann["ann"].id)
    web = client.get("/exports/customers?format=csv&include_opted_out=1&columns=customer_id,name,phone")
    assert web.status_code == 200
    rows = list(csv.reader(io.StringIO(web.get_data(as_text=True))))
    assert rows == [["customer_id", "name", "phone"], ["C-BOB", "Bob", "+12025550102"]]

    out = tmp_path / "customers.csv"
    result = runner.invoke(args=["export", "customers", "--include-opted-out", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "C-BOB" in text and "erased-" not in text and "ann@example.com" not in text

    recipients = client.get(f"/exports/campaign-recipients?format=csv&campaign={ann['pending'].id}")
    assert recipients.status_code == 200
    assert "+12025550102" in recipients.get_data(as_text=True)
    assert "+12025550101" not in recipients.get_data(as_text=True)

    audience = build_audience({}, None, now=datetime(2026, 2, 1, tzinfo=timezone.utc), cap_days=0)
    assert [r["customer_id"] for r in audience.eligible] == [ann["bob"].id]
