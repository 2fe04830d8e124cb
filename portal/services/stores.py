"""Stores: the chain's shops, each with its time zone, currency, phone region and SMS sender (admins edit them)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select

from portal.extensions import db
from portal.models import Store
from portal.services import audit

FIELDS = ("name", "timezone", "currency", "phone_region", "sender_name", "contact_line")


class StoreError(ValueError):
    """A store change that was refused; the message is for the form."""


def all_stores() -> list[Store]:
    return list(db.session.scalars(select(Store).order_by(Store.name)))


def get(store_id: int | None) -> Store | None:
    return db.session.get(Store, store_id) if store_id else None


def create(values: Mapping, user_email: str) -> Store:
    """Create a store from ``values`` (``FIELDS``); StoreError when the name is taken."""
    name = values["name"].strip()
    if db.session.scalar(select(Store).where(Store.name == name)):
        raise StoreError("A store with this name exists.")
    store = Store(**{k: values.get(k) for k in FIELDS if k != "name"}, name=name)
    db.session.add(store)
    audit.record("store.create", store.name, {k: getattr(store, k) for k in FIELDS if k != "name"}, user_email)
    db.session.commit()
    return store


def update(store: Store, values: Mapping, user_email: str) -> Store:
    """Change a store's fields, audited with before and after; StoreError when the new name is taken."""
    if db.session.scalar(select(Store).where(Store.name == values["name"].strip(), Store.id != store.id)):
        raise StoreError("A store with this name exists.")
    before = {k: getattr(store, k) for k in FIELDS}
    for k in FIELDS:
        setattr(store, k, values.get(k))
    audit.record(
        "store.update", store.name, {"before": before, "after": {k: getattr(store, k) for k in FIELDS}}, user_email
    )
    db.session.commit()
    return store
