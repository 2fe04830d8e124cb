"""Builders for the mail tests: purchase lines at a store, straight into the tables."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from portal.extensions import db
from portal.models import Product, PurchaseLine

_counter = {"tx": 0}


def product(external_id: str = "P1", price: str = "10") -> Product:
    row = db.session.query(Product).filter_by(external_id=external_id).one_or_none()
    if row is None:
        row = Product(external_id=external_id, name=f"Product {external_id}", price=Decimal(price))
        db.session.add(row)
        db.session.commit()
    return row


def buy(customer, store, when: str, amount: str, item: Product | None = None, quantity: str = "1") -> None:
    """One purchase line (store-local wall time ``when``, 'YYYY-MM-DD HH:MM')."""
    _counter["tx"] += 1
    item = item or product()
    db.session.add(
        PurchaseLine(
            transaction_ref=f"T{_counter['tx']:06d}",
            product_id=item.id,
            line_no=0,
            customer_id=customer.id,
            store_id=store.id,
            purchased_at=datetime.strptime(when, "%Y-%m-%d %H:%M"),
            quantity=Decimal(quantity),
            unit_price=Decimal(amount),
            amount=Decimal(amount),
        )
    )
    db.session.commit()
