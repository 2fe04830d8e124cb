"""Shared fixtures: app, db, client (CSRF on), runner, login_as(role), factories.

The suite runs on SQLite by default; with DATABASE_URL set it runs on that database instead
(CI runs it again on PostgreSQL). Tables are created once per session and emptied after each test.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from sqlalchemy import text

from app import create_app
from portal.config import TestConfig
from portal.extensions import db as _db

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PASSWORD = "correct-horse-battery"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (run once in CI, not on both backends)")
    config.addinivalue_line("markers", "browser: drives Chromium with Playwright")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    url = os.environ.get("DATABASE_URL")
    if url:
        return _normalise(url)
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


def _normalise(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("Models"))


@pytest.fixture(scope="session")
def _app(database_url, models_dir, tmp_path_factory):
    config = TestConfig(database_url=database_url, models_dir=models_dir)
    config.UPLOAD_DIR = str(tmp_path_factory.mktemp("uploads"))
    app = create_app(config)
    with app.app_context():
        _db.drop_all()
        _db.create_all()
    return app


@pytest.fixture()
def app(_app):
    with _app.app_context():
        yield _app
        _db.session.remove()
        _empty_tables()
        _app.extensions.pop("loyalist_models", None)
        for path in Path(_app.config["MODELS_DIR"]).iterdir():
            path.unlink()


def _empty_tables():
    engine = _db.engine
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in _db.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(_db.metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture()
def db(app):
    return _db


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def runner(app):
    return app.test_cli_runner()


def csrf_token(client, path: str) -> str:
    """Read the CSRF token from a page, as a browser would, so tests post real forms."""
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def post_form(client, path: str, data: dict, token_from: str | None = None, **kwargs):
    """POST a form with the CSRF token taken from ``token_from`` (default: the same page)."""
    token = csrf_token(client, token_from or path)
    return client.post(path, data={**data, "csrf_token": token}, **kwargs)


@pytest.fixture()
def make_store(db):
    from portal.models import Store

    def make(name="Downtown", **kw):
        store = Store(
            name=name,
            timezone=kw.pop("timezone", "America/New_York"),
            currency=kw.pop("currency", "USD"),
            phone_region="US",
            sender_name=kw.pop("sender_name", name),
            contact_line=kw.pop("contact_line", f"{name} store, call 202-555-0100"),
            **kw,
        )
        db.session.add(store)
        db.session.commit()
        return store

    return make


@pytest.fixture()
def make_user(db):
    from portal.models import User

    def make(role="admin", email=None, store=None, password=PASSWORD, active=True):
        user = User(
            email=email or f"{role}{'-' + store.name.lower() if store else ''}@example.com",
            role=role,
            store_id=store.id if store else None,
            active=active,
        )
        user.set_password(password)
        db.session.add(user)
        db.session.commit()
        return user

    return make


@pytest.fixture()
def make_customer(db):
    from portal.models import Customer

    counter = {"n": 0}

    def make(store=None, **overrides):
        counter["n"] += 1
        fields = dict(
            external_id=f"C{counter['n']:05d}",
            name=f"Customer {counter['n']}",
            phone=f"+1202555{100 + counter['n'] % 100:04d}",
            store_id=store.id if store else None,
        )
        fields.update(overrides)
        customer = Customer(**fields)
        db.session.add(customer)
        db.session.commit()
        return customer

    return make


def login(client, email: str, password: str = PASSWORD):
    return post_form(client, "/login", {"email": email, "password": password}, follow_redirects=False)


@pytest.fixture()
def login_as(client, make_user, make_store):
    """Log the test client in as a new user of ``role`` (managers get a store)."""

    def do(role="admin", store=None):
        if role == "manager" and store is None:
            store = make_store("Home store")
        user = make_user(role, store=store)
        response = login(client, user.email)
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        return user

    return do


def synthetic_lines(n_customers=300, days=900, seed=7, end="2026-10-31"):
    """A small store's purchase lines with real signal: rates differ, some customers stop buying."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    end = pd.Timestamp(end)
    start = end - pd.Timedelta(days=days)
    rows = []
    tx = 0
    for c in range(n_customers):
        rate = rng.gamma(2.0, 1 / 40)  # purchases per day
        first = start + pd.Timedelta(days=int(rng.integers(0, days // 2)))
        stop = first + pd.Timedelta(days=int(rng.exponential(500)))
        t = first
        while t <= min(stop, end):
            tx += 1
            for _ in range(int(rng.integers(1, 4))):
                product = int(min(rng.zipf(1.6), 40))
                qty = int(rng.integers(1, 4))
                price = 5.0 + product * 7.5
                rows.append(
                    (f"C{c:04d}", f"T{tx:06d}", t, f"P{product:03d}", f"Product {product}", qty, price, qty * price)
                )
            t = t + pd.Timedelta(days=max(1, int(rng.exponential(1 / rate))))
    return pd.DataFrame(
        rows,
        columns=[
            "customer_id",
            "transaction_id",
            "purchase_date",
            "product_id",
            "product_name",
            "quantity",
            "price_per_unit",
            "total_amount",
        ],
    )


def prefixed_lines(frame, prefix: str):
    """The same kind of store data under other ids (customers, transactions, products), so two stores can be
    seeded side by side."""
    out = frame.copy()
    for col in ("customer_id", "transaction_id", "product_id"):
        out[col] = prefix + out[col].astype(str)
    out["product_name"] = prefix + out["product_name"]
    return out


@pytest.fixture()
def seed_lines(db, make_store):
    """Insert a canonical lines frame straight into the tables (no importer), for model tests."""
    from portal.models import Customer, Product, PurchaseLine

    def seed(frame, store=None):
        store = store or make_store("Seed store")
        products = frame.drop_duplicates("product_id")
        db.session.execute(
            Product.__table__.insert(),
            [{"external_id": r.product_id, "name": r.product_name} for r in products.itertuples()],
        )
        customers = frame["customer_id"].dropna().unique()
        db.session.execute(
            Customer.__table__.insert(),
            [
                {"external_id": c, "name": f"Name {c}", "store_id": store.id, "sms_consent": "unknown"}
                for c in customers
            ],
        )
        db.session.flush()
        from sqlalchemy import select

        pid = dict(db.session.execute(select(Product.external_id, Product.id)).all())
        cid = dict(db.session.execute(select(Customer.external_id, Customer.id)).all())
        frame = frame.assign(line_no=frame.groupby(["transaction_id", "product_id"]).cumcount())
        db.session.execute(
            PurchaseLine.__table__.insert(),
            [
                {
                    "transaction_ref": r.transaction_id,
                    "product_id": pid[r.product_id],
                    "line_no": int(r.line_no),
                    "customer_id": cid.get(r.customer_id),
                    "store_id": store.id,
                    "purchased_at": r.purchase_date.to_pydatetime(),
                    "quantity": r.quantity,
                    "unit_price": r.price_per_unit,
                    "amount": r.total_amount,
                }
                for r in frame.itertuples()
            ],
        )
        db.session.commit()
        return store

    return seed
