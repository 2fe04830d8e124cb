"""Search by prefix, in any case, on every list with ``q``: ids, names, e-mails and phone numbers, from an index.

Runs on SQLite and (with DATABASE_URL) on PostgreSQL; the EXPLAIN tests show each backend reads the indexes.
"""

import re
from decimal import Decimal

import pytest
from sqlalchemy import text

from portal.extensions import db as _db
from portal.models import Store
from portal.services.customers import search
from portal.services.customers.customers import filtered_customers


def _ids(html: str) -> set[str]:
    return set(re.findall(r'/customers/\d+">([^<]+)</a>', html))


@pytest.fixture()
def people(db, make_store, make_customer):
    us = make_store("Main Street")
    uk = Store(name="Soho", timezone="Europe/London", currency="GBP", phone_region="GB", sender_name="Soho")
    db.session.add(uk)
    db.session.commit()
    rows = {
        "C02351": dict(store=us, name="Maria Lopez", phone="+15551234567", email="maria@example.com"),
        "X00017": dict(store=us, name="Mark Twain", phone="+12025550199", email="mt@example.org"),
        "C99999": dict(store=us, name="Anna Martin", phone="+12025550142", email="ann.lee@example.com"),
        "UK0001": dict(store=uk, name="Édith Piaf", phone="+442071234567", email=None),
        "C_1%": dict(store=us, name="Odd Id", phone=None, email=None),
    }
    made = {
        ext: make_customer(external_id=ext, churn_band="High", churn_probability=0.9, **r) for ext, r in rows.items()
    }
    return made


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("C0235", {"C02351"}),
        ("c0235", {"C02351"}),  # any case
        ("x0001", {"X00017"}),
        ("mar", {"C02351", "X00017"}),  # name prefix: Maria, Mark (not Anna Martin: a prefix, not a substring)
        ("MARIA L", {"C02351"}),
        ("+1555", {"C02351"}),
        ("555", {"C02351"}),  # national digits: the store's country code is put in front
        ("(555) 123", {"C02351"}),
        ("+1 202 555", {"X00017", "C99999"}),
        ("020 7123", {"UK0001"}),  # a UK number written nationally, trunk 0 and all
        ("ann.lee@", {"C99999"}),
        ("édith", {"UK0001"}),
        ("235", set()),  # inside an id, not at its start
        ("C_", {"C_1%"}),  # LIKE's wildcards are plain characters here
        ("%", set()),
        ("Z" * 300, set()),  # long input: no error
    ],
)
def test_customer_list_finds_by_prefix(client, login_as, people, q, expected):
    login_as("admin")
    response = client.get("/customers", query_string={"q": q})
    assert response.status_code == 200
    assert _ids(response.get_data(as_text=True)) == expected


def test_every_customer_list_uses_the_same_search(client, login_as, people):
    login_as("admin")
    for url in ("/customers?q=c0235", "/tiers?q=c0235&tier=", "/churn?q=c0235"):
        response = client.get(url)
        assert response.status_code == 200
    csv = client.get("/customers?q=c0235&format=csv").get_data(as_text=True)
    assert "C02351" in csv and "X00017" not in csv


def test_store_users_search_only_their_store(client, login_as, people):
    login_as("manager", store=people["UK0001"].store)
    assert _ids(client.get("/customers?q=c").get_data(as_text=True)) == set()
    assert _ids(client.get("/customers?q=uk").get_data(as_text=True)) == {"UK0001"}


def test_search_keys_follow_every_write(db, people):
    """Generated columns: an update (the importer's SQL, an erasure) changes the key with it."""
    maria = people["C02351"]
    db.session.execute(text("UPDATE customers SET name = 'Zoe Quinn' WHERE id = :id"), {"id": maria.id})
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(type(maria), maria.id).search_name == "zoe quinn"
    found = db.session.scalars(filtered_customers({"q": "zoe"})).all()
    assert [c.external_id for c in found] == ["C02351"]


def test_successor_bounds_a_prefix():
    assert search.successor("abc") == "abd"
    assert search.successor("ab\U0010ffff") == "ac"
    assert search.successor("\U0010ffff") is None


def _plan(query) -> str:
    bind = _db.session.get_bind()
    sql = str(query.compile(dialect=bind.dialect, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN " if bind.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    rows = _db.session.execute(text(prefix + sql)).all()
    return "\n".join(str(r[-1]) for r in rows)


@pytest.fixture()
def crowd(db, people):
    """5,000 more customers, so each database's planner has a real choice between the indexes and a scan."""
    from sqlalchemy import insert

    from portal.models import Customer

    store_id = people["C02351"].store_id
    db.session.execute(
        insert(Customer),
        [
            dict(
                external_id=f"N{i:06d}",
                name=f"{('Bo', 'Cy', 'Di', 'Ed', 'Flo')[i % 5]} Person{i}",
                phone=f"+1303{i:07d}",
                email=f"p{i}@example.net",
                store_id=store_id,
            )
            for i in range(5000)
        ],
    )
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("ANALYZE customers"))
    else:
        db.session.execute(text("ANALYZE"))
    db.session.commit()


@pytest.mark.parametrize("q", ["c0235", "mar", "555", "ann.lee@"])
def test_search_reads_the_indexes(db, crowd, q):
    plan = _plan(filtered_customers({"q": q}).with_only_columns(_db.func.count()))
    for column in ("search_id", "search_name", "search_email"):
        assert f"ix_customers_{column}" in plan, plan
    assert not re.search(r"SCAN customers$|Seq Scan", plan, re.M), plan
    if q == "555":
        assert "ix_customers_search_phone" in plan, plan


def test_other_lists_search_by_prefix_too(db, people, make_store):
    import portal.services.lists.definitions  # noqa: F401  (registers the lists)
    from portal.models import Product, StockLevel
    from portal.services.lists import registry

    store = people["C02351"].store
    tea = Product(external_id="SKU-TEA-01", name="Green tea", price=Decimal("2"))
    db.session.add(tea)
    db.session.flush()
    db.session.add(StockLevel(product_id=tea.id, store_id=store.id, initial_stock=Decimal(100), total_sold=Decimal(1)))
    db.session.commit()
    dead = registry.get("dead-stock")
    for q, n in (("sku-tea", 1), ("SKU-TEA-01", 1), ("tea-01", 0), ("green", 1), ("%", 0)):
        assert len(db.session.scalars(dead.query({"q": q}, None)).all()) == n, q
