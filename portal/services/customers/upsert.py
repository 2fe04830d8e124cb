"""One customer created or updated by external id (the API's POST /customers), with the importer's rules.

The fields go through ``preprocessing.columns.validate_chunk`` as a one-row customers file would
(phone to E.164 in the store's region, e-mail checked), and the store rules of a customers import
apply: a store user creates customers of their own store and never changes another store's customer.
Consent is recorded with ``set_consent`` (its source and date, a ConsentEvent, the audit log); an
opt-out always wins, as everywhere.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
from sqlalchemy import select

from portal.extensions import db
from portal.models import Customer, Store
from portal.security import user_store_id
from portal.services import audit
from portal.services.customers.customers import ConsentError, consent_committed, set_consent
from portal.services.importer.merge import OTHER_STORES_CUSTOMER
from portal.services.importer.runs import default_store, find_store
from portal.services.summaries import customers as customer_summaries
from preprocessing.columns import Mapping, validate_chunk


class UpsertRefused(Exception):
    """Not written: ``status`` (403, 409, 422), a message and field errors."""

    def __init__(self, status: int, message: str, errors: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


def upsert(data: dict, user) -> tuple[Customer, bool, str | None]:
    """Create or update the customer ``data["external_id"]`` for ``user``; commits.

    Returns (customer, created, their consent before this request: None for a new customer).
    """
    if user.role not in ("admin", "manager"):
        raise UpsertRefused(403, "Only admins and managers create or change customers (as with imports).")
    own_store = user_store_id(user)
    if user.role != "admin" and own_store is None:
        raise UpsertRefused(403, "Your user has no store, so it cannot create customers.")
    store = None
    if data.get("store"):
        store = find_store(data["store"])
        if store is None:
            raise UpsertRefused(422, "Unknown store.", {"store": [f"unknown store {data['store']!r}"]})
        if own_store is not None and store.id != own_store:
            raise UpsertRefused(403, "You can create and change customers of your own store only.")
    region_store = store or (db.session.get(Store, own_store) if own_store else default_store())
    row = {
        "customer_id": data["external_id"],
        "name": data.get("name") or "",
        "phone": data.get("phone") or "",
        "email": data.get("email") or "",
    }
    clean, problems = validate_chunk(
        pd.DataFrame([row], index=[0]),
        Mapping({k: k for k in row}, kind="customers"),
        "customers",
        default_region=region_store.phone_region or "US",
    )
    errors = {}
    for rec in problems.to_dict("records"):
        if rec["level"] == "error":
            errors.setdefault(str(rec["field"]), []).append(str(rec["reason"]))
    if errors or clean.empty:
        raise UpsertRefused(422, "The customer is not valid; see 'errors'.", errors or {"external_id": ["invalid"]})
    values = clean.iloc[0]
    ext = str(values["customer_id"])
    customer = db.session.scalar(select(Customer).where(Customer.external_id == ext))
    created = customer is None
    if customer is not None:
        if own_store is not None and customer.store_id != own_store:
            raise UpsertRefused(409, OTHER_STORES_CUSTOMER[0].upper() + OTHER_STORES_CUSTOMER[1:] + ".")
        if customer.erased_at is not None:
            raise UpsertRefused(409, "This customer was erased; their record cannot be filled in again.")
    else:
        customer = Customer(
            external_id=ext,
            store_id=(store or region_store).id,
            sms_consent="unknown",
            created_at=datetime.now(timezone.utc),
        )
        db.session.add(customer)
    consent_before = None if created else customer.sms_consent
    before = {k: getattr(customer, k) for k in ("name", "phone", "email", "store_id")}
    for field in ("name", "phone", "email"):
        value = values.get(field)
        if isinstance(value, str) and value:
            setattr(customer, field, value)
    if store is not None:
        customer.store_id = store.id
    db.session.flush()
    after = {k: getattr(customer, k) for k in ("name", "phone", "email", "store_id")}
    changed = sorted(k for k in after if after[k] != before[k])
    audit.record(
        "customer.create" if created else "customer.update",
        f"customer:{customer.id}",
        {"fields": changed, "source": "api"},
        user.email,
    )
    consent = data.get("consent")
    if consent:
        record_consent(customer, consent, user, commit=False)
    db.session.commit()
    consent_committed()
    if created or "store_id" in changed:  # a new customer, or one moved between stores: their counts move
        customer_summaries.changed({before["store_id"], after["store_id"]})
    if consent and consent.get("status") == "opted_out":
        _opted_out(customer)
    return customer, created, consent_before


def _opted_out(customer: Customer) -> None:
    """An opt-out counts on the customer's campaigns ("opted out since"): ask for their numbers' refresh."""
    from portal.services.summaries import campaigns as campaign_summaries

    campaign_summaries.changed(customer_ids=[customer.id])


def record_consent(customer: Customer, consent: dict, user, commit: bool = True) -> None:
    """Record a consent change given through the API (status, source, effective_at); an opt-out always wins."""
    status = consent["status"]
    if status == "opted_in" and customer.sms_consent == "opted_out":
        effective = consent.get("effective_at")
        last = customer.sms_consent_at
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=timezone.utc)
        if effective is None or (last is not None and effective <= last):
            db.session.rollback()
            raise UpsertRefused(
                409,
                "The customer opted out; a new opt-in needs its own date, later than the opt-out "
                "(effective_at), and its source.",
            )
    effective_at = consent.get("effective_at")
    if effective_at is not None and effective_at.tzinfo is None:
        effective_at = effective_at.replace(tzinfo=timezone.utc)
    if effective_at is not None and effective_at > datetime.now(timezone.utc):
        db.session.rollback()
        raise UpsertRefused(422, "The consent date is in the future.", {"effective_at": ["in the future"]})
    try:
        set_consent(customer, status, (consent.get("source") or "api").strip(), effective_at, user.email)
    except ConsentError as exc:
        db.session.rollback()
        raise UpsertRefused(422, str(exc)) from exc
    if commit:
        db.session.commit()
        consent_committed()
        if status == "opted_out":
            _opted_out(customer)
