"""API fixtures: a token for a user (through the service, as the tokens page creates it) and a client
that sends it as ``Authorization: Bearer``."""

from __future__ import annotations

import pytest


class ApiClient:
    """The Flask test client with a bearer token on every request (and no session of its own)."""

    def __init__(self, client, secret: str):
        self.client, self.secret = client, secret

    def _headers(self, headers):
        return {"Authorization": f"Bearer {self.secret}", **(headers or {})}

    def get(self, path, headers=None, **kw):
        return self.client.get(path, headers=self._headers(headers), **kw)

    def post(self, path, headers=None, **kw):
        return self.client.post(path, headers=self._headers(headers), **kw)

    def delete(self, path, headers=None, **kw):
        return self.client.delete(path, headers=self._headers(headers), **kw)


@pytest.fixture()
def make_token(db):
    from portal.services import api_tokens

    def make(user, name="till", days=None):
        token, secret = api_tokens.create(user, name, days, user)
        return token, secret

    return make


@pytest.fixture()
def api_as(app, make_user, make_store, make_token):
    """An ApiClient for a new user of ``role`` (managers get a store unless given one)."""

    def do(role="admin", store=None, email=None):
        if role == "manager" and store is None:
            store = make_store("Home store")
        user = make_user(role, store=store, email=email)
        token, secret = make_token(user)
        api = ApiClient(app.test_client(), secret)
        api.user, api.token = user, token
        return api

    return do


def line(customer="C1", txn="T1", product="P1", date="2026-10-01T10:00:00", qty=1, price=10.0, **extra):
    """One purchase line as the API takes it."""
    return {
        "customer_id": customer,
        "transaction_id": txn,
        "purchase_date": date,
        "product_id": product,
        "product_name": f"Product {product}",
        "quantity": qty,
        "price_per_unit": price,
        **extra,
    }
