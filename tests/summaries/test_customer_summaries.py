"""The stored customer summaries (tier, band and KPI counts per store) follow every kind of change.

After a full rescore, an incremental rescore, a file import, an undo, an API upsert, an erasure and
an opt-out (jobs run inline in tests), the stored cube read back equals the aggregate computed from
scratch in Python over every customer, for the chain and for each store; the pages say "as of" and a
store manager's numbers come from their store's row only.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import event, select

from portal.models import Customer, CustomerSummary, Job, PurchaseLine, Store
from portal.services import settings as settings_service
from portal.services.customers import customers as customer_service
from portal.services.customers import upsert
from portal.services.dashboard import numbers as dashboard_service
from portal.services.importer import history, runs
from portal.services.scores import churn as churn_service
from portal.services.scores import incremental, scoring, training
from portal.services.scores import tiers as tier_service
from portal.services.summaries import customers as summaries
from tests.conftest import post_form, prefixed_lines, synthetic_lines

KEYS = ("tier", "churn_band", "lifecycle")


@pytest.fixture()
def world(db, seed_lines, make_store):
    """Two scored stores (tiers, churn, lifecycle) whose summaries the rescore stored."""
    north = seed_lines(synthetic_lines(n_customers=120, seed=3), store=make_store("North"))
    south = seed_lines(prefixed_lines(synthetic_lines(n_customers=80, seed=5), "S"), store=make_store("South"))
    settings_service.update({"tiers.bar": "fixed", "tier.min_frequency": "5", "tier.min_monetary": "2000"})
    training.train_segmentation(rescore=False)
    training.train_churn(rescore=False)
    scoring.rescore_all()
    return north, south


# --------------------------------------------------------------------------- the reference, from scratch


def _utc(value):
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def reference(db, store_ids) -> dict:
    """The cube computed in Python over every (non-erased) customer of ``store_ids``: key -> measures."""
    cube: dict = defaultdict(
        lambda: {
            "n": 0,
            "n_scored": 0,
            "n_active": 0,
            "n_recent": 0,
            "n_monetary": 0,
            "n_opted_out": 0,
            "sum_monetary": Decimal(0),
            "sum_spend_12m": Decimal(0),
            "risk": [],
            "max_scored_at": None,
        }
    )
    db.session.expire_all()
    for c in db.session.scalars(select(Customer)):
        if c.erased_at is not None or c.store_id not in store_ids:
            continue
        g = cube[(c.tier, c.churn_band, c.lifecycle)]
        g["n"] += 1
        g["n_active"] += c.recency is not None and c.recency < 90
        g["n_recent"] += c.recency is not None and c.recency < 30
        g["n_scored"] += c.scored_at is not None
        g["n_opted_out"] += c.sms_consent == "opted_out"
        if c.monetary is not None:
            g["n_monetary"] += 1
            g["sum_monetary"] += Decimal(c.monetary)
        g["sum_spend_12m"] += Decimal(c.spend_12m or 0)
        if c.churn_probability is not None:
            value = c.clv_12m if c.clv_12m is not None else (c.spend_12m if c.spend_12m is not None else 0)
            g["risk"].append(c.churn_probability * float(value))
        scored = _utc(c.scored_at)
        if scored is not None and (g["max_scored_at"] is None or scored > g["max_scored_at"]):
            g["max_scored_at"] = scored
    return dict(cube)


def stored(groups: list[dict]) -> dict:
    return {tuple(g[k] for k in KEYS): g for g in groups}


def assert_same(db, stores) -> None:
    """The stored cube equals the reference, for the chain and for each store (read without refreshing)."""
    scopes = {"chain": [s.id for s in stores], **{s.name: [s.id] for s in stores}}
    for name, ids in scopes.items():
        db.session.expire_all()
        rows = db.session.scalars(select(CustomerSummary).where(CustomerSummary.store_id.in_(ids))).all()
        assert len(rows) == len(ids), f"{name}: a store has no stored summary"
        groups, as_of = summaries.read(ids)
        assert as_of == min(_utc(r.computed_at) for r in rows)
        got, want = stored(groups), reference(db, set(ids))
        assert set(got) == set(want), name
        for key, w in want.items():
            g = got[key]
            for count in ("n", "n_scored", "n_active", "n_recent", "n_monetary", "n_opted_out"):
                assert g[count] == w[count], (name, key, count)
            assert Decimal(str(g["sum_monetary"])) == w["sum_monetary"].quantize(Decimal("0.01")), (name, key)
            assert Decimal(str(g["sum_spend_12m"])) == w["sum_spend_12m"].quantize(Decimal("0.01")), (name, key)
            assert math.isclose(g["sum_value_at_risk"], math.fsum(w["risk"]), rel_tol=1e-9, abs_tol=1e-6)
            got_scored = datetime.fromisoformat(g["max_scored_at"]) if g["max_scored_at"] else None
            assert got_scored == w["max_scored_at"], (name, key)


def _totals(db) -> dict:
    """Per store: (customers, tiered, banded, spend) from scratch, to show a change moved the numbers."""
    out = {}
    for store in db.session.scalars(select(Store)):
        cube = reference(db, {store.id})
        out[store.name] = (
            sum(g["n"] for g in cube.values()),
            sorted((k[0] or "", g["n"]) for k, g in cube.items()),
            sum(g["sum_monetary"] for g in cube.values()),
        )
    return out


# --------------------------------------------------------------------------- each kind of change


def test_after_the_initial_rescore_every_store_has_its_summary(db, world):
    north, south = world
    assert_same(db, [north, south])
    counts = {
        r.store_id: sum(g["n"] for g in summaries.merge(r.data["rows"]))
        for r in db.session.scalars(select(CustomerSummary))
    }
    assert counts == {north.id: 120, south.id: 80}


def test_a_full_rescore_refreshes_every_store(db, world):
    north, south = world
    before = _totals(db)
    settings_service.update({"tier.min_frequency": "3", "tier.min_monetary": "800"})  # a lower bar: more tiers
    training.train_segmentation(rescore=False)
    scoring.rescore_all()
    assert _totals(db) != before  # the rescore moved the numbers
    assert_same(db, [north, south])


def _add_lines(db, store, rows) -> None:
    """Purchase lines written straight to the table: rows of (customer external id or None, amount, day)."""
    product = db.session.scalar(select(PurchaseLine.product_id).limit(1))
    ids = dict(db.session.execute(select(Customer.external_id, Customer.id)).all())
    for i, (ext, amount, day) in enumerate(rows):
        db.session.add(
            PurchaseLine(
                transaction_ref=f"T-EXTRA-{store.id}-{i}-{ext}",
                product_id=product,
                customer_id=ids.get(ext),
                store_id=store.id,
                purchased_at=day,
                quantity=1,
                unit_price=amount,
                amount=amount,
            )
        )
    db.session.commit()


def test_an_incremental_rescore_refreshes_the_stores_of_its_customers(db, world):
    north, south = world
    latest = db.session.scalar(select(PurchaseLine.purchased_at).order_by(PurchaseLine.purchased_at.desc()).limit(1))
    low = db.session.scalars(
        select(Customer).where(Customer.store_id == north.id, Customer.tier.is_(None)).order_by(Customer.id).limit(3)
    ).all()
    assert low
    _add_lines(db, north, [(c.external_id, 2500.0, latest - timedelta(days=i)) for c in low for i in range(6)])
    before = _totals(db)
    south_row = db.session.get(CustomerSummary, south.id).computed_at
    incremental.rescore_customers([c.id for c in low])
    after = _totals(db)
    assert after["North"] != before["North"] and after["South"] == before["South"]
    assert_same(db, [north, south])
    db.session.expire_all()
    assert db.session.get(CustomerSummary, south.id).computed_at == south_row  # only the touched store
    jobs = db.session.scalars(select(Job).where(Job.func == summaries.JOB)).all()
    assert [(j.store_id, j.status) for j in jobs] == [(north.id, "done")]


def _write_csv(app, name: str, text: str) -> str:
    path = os.path.join(app.config["UPLOAD_DIR"], f"{datetime.now().timestamp()}-{name}")
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)
    return path


def _import(app, south, text: str):
    path = _write_csv(app, "new_lines.csv", text)
    run, _ = runs.create_run(
        "transactions", path, "new_lines.csv", store=south, user_email="test", source="cli", stale_ok=True
    )
    return runs.execute(run.id)


HEADER = "customer_id,transaction_id,purchase_date,product_id,product_name,quantity,price_per_unit,total_amount,store\n"


def test_a_file_import_and_its_undo_refresh_the_summaries(app, db, world):
    north, south = world
    day = pd.Timestamp(db.session.scalar(select(PurchaseLine.purchased_at).order_by(PurchaseLine.purchased_at)))
    day = max(day, pd.Timestamp("2026-10-01"))
    rows = []
    for i in range(8):  # eight new South customers with a few purchases each, and more for a known one
        for k in range(3):
            when = (day + pd.Timedelta(days=10 * k + i)).strftime("%Y-%m-%d 10:00:00")
            rows.append(f"NEW{i},TN{i}-{k},{when},PN1,New item,1,{40 + i}.50,{40 + i}.50,South\n")
    known = db.session.scalar(select(Customer.external_id).where(Customer.store_id == south.id).limit(1))
    rows.append(f"{known},TK1,{day.strftime('%Y-%m-%d 11:00:00')},PN1,New item,2,900.00,1800.00,South\n")
    before = _totals(db)
    run = _import(app, south, HEADER + "".join(rows))
    assert run.status == "done", run.message
    imported = _totals(db)
    assert imported["South"] != before["South"] and imported["South"][0] == before["South"][0] + 8
    assert_same(db, [north, south])

    history.undo(db.session.get(type(run), run.id), "test")  # its rescore job runs inline
    undone = _totals(db)
    assert undone["South"] != imported["South"]
    assert_same(db, [north, south])


def test_an_api_upsert_of_a_new_customer_refreshes_its_store(db, world, make_user):
    north, south = world
    admin = make_user("admin", email="upsert-admin@example.com")
    before = _totals(db)
    upsert.upsert({"external_id": "API-NEW-1", "name": "New Person", "store": "South"}, admin)
    assert _totals(db)["South"][0] == before["South"][0] + 1
    assert_same(db, [north, south])


def test_an_erasure_refreshes_the_store(client, db, world, login_as):
    north, south = world
    login_as("admin")
    victim = db.session.scalar(
        select(Customer).where(Customer.store_id == north.id, Customer.tier.isnot(None)).order_by(Customer.id).limit(1)
    )
    before = _totals(db)
    response = post_form(
        client, f"/customers/{victim.id}/erase", {"confirm": "y"}, token_from=f"/customers/{victim.id}"
    )
    assert response.status_code == 302
    assert _totals(db)["North"][0] == before["North"][0] - 1
    assert_same(db, [north, south])
    privacy_job = db.session.scalars(select(Job).where(Job.func == summaries.JOB)).all()
    assert [(j.store_id, j.status) for j in privacy_job] == [(north.id, "done")]


def _summary_jobs(db) -> list[tuple]:
    return [(j.store_id, j.status) for j in db.session.scalars(select(Job).where(Job.func == summaries.JOB))]


def test_an_opt_out_and_an_opt_in_on_the_page_refresh_the_store(client, db, world, login_as):
    """The cube counts opted-out customers (the export panel's "can be exported"): a staff opt-out, then the
    customer's new opt-in, each refresh the customer's store only."""
    north, south = world
    login_as("admin")
    customer = db.session.scalar(select(Customer).where(Customer.store_id == south.id).limit(1))
    north_row = db.session.get(CustomerSummary, north.id).computed_at
    response = post_form(client, f"/customers/{customer.id}", {"status": "opted_out", "source": "phone call"})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Customer, customer.id).sms_consent == "opted_out"
    assert sum(g["n_opted_out"] for g in reference(db, {south.id}).values()) >= 1
    assert_same(db, [north, south])
    assert _summary_jobs(db) == [(south.id, "done")]
    response = post_form(
        client,
        f"/customers/{customer.id}",
        {"status": "opted_in", "source": "signed form", "effective": ""},
    )
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Customer, customer.id).sms_consent == "opted_in"
    assert_same(db, [north, south])
    assert _summary_jobs(db) == [(south.id, "done"), (south.id, "done")]
    assert db.session.get(CustomerSummary, north.id).computed_at == north_row


def test_stop_and_start_replies_and_an_api_opt_out_refresh_the_store(client, app, db, world, make_user):
    from portal.services.campaigns import replies

    north, south = world
    one, two = db.session.scalars(select(Customer).where(Customer.store_id == north.id).order_by(Customer.id).limit(2))
    one.phone, two.phone = "+12025550101", "+12025550102"
    db.session.commit()
    replies.record_reply({"From": one.phone, "Body": "STOP", "MessageSid": "SM-stop-1"})
    db.session.expire_all()
    assert db.session.get(Customer, one.id).sms_consent == "opted_out"
    assert_same(db, [north, south])
    replies.record_reply({"From": one.phone, "Body": "START", "MessageSid": "SM-start-1"})
    db.session.expire_all()
    assert db.session.get(Customer, one.id).sms_consent == "opted_in"
    assert_same(db, [north, south])
    admin = make_user("admin", email="consent-admin@example.com")
    upsert.record_consent(db.session.get(Customer, two.id), {"status": "opted_out", "source": "till"}, admin)
    assert_same(db, [north, south])
    assert {s for s, _ in _summary_jobs(db)} == {north.id}


def test_a_burst_of_changes_queues_one_refresh_per_store(db, world, monkeypatch):
    north, south = world
    asked = []
    monkeypatch.setattr(summaries.jobs, "enqueue", lambda name, title, **kw: asked.append(kw["store_id"]))
    summaries.request_refresh([north.id])
    assert asked == [north.id]
    db.session.add(
        Job(id="queued-north", func=summaries.JOB, title="Customer summary", status="queued", store_id=north.id)
    )
    db.session.commit()
    summaries.request_refresh([north.id, south.id, None])
    assert asked == [north.id, south.id]  # North has one queued already


def test_a_missing_row_is_computed_once_on_read(db, world):
    north, south = world
    db.session.execute(CustomerSummary.__table__.delete())
    db.session.commit()
    groups, as_of = summaries.read([north.id])
    assert as_of is not None and sum(g["n"] for g in groups) == 120
    assert [r.store_id for r in db.session.scalars(select(CustomerSummary))] == [north.id]
    summaries.read([south.id])
    assert_same(db, [north, south])


# --------------------------------------------------------------------------- pages


def _customer_groupings(db):
    """Record statements that group the customers table (the per-request aggregate the stored rows replace)."""
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        text = " ".join(statement.split()).lower()
        if "from customers" in text and "group by" in text and "customers.store_id is null" not in text:
            seen.append(text)

    event.listen(db.engine, "before_cursor_execute", record)
    return seen, lambda: event.remove(db.engine, "before_cursor_execute", record)


@pytest.mark.parametrize("path", ["/", "/tiers", "/churn", "/churn?band=High&include_lost=1"])
def test_the_pages_read_the_stored_rows_and_say_as_of(client, db, world, login_as, path):
    north, south = world
    login_as("admin")
    client.get(path)  # warm: nothing missing
    seen, stop = _customer_groupings(db)
    try:
        page = client.get(path).get_data(as_text=True)
    finally:
        stop()
    assert seen == []
    oldest = min(_utc(r.computed_at) for r in db.session.scalars(select(CustomerSummary)))
    assert f"as of {oldest.astimezone(ZoneInfo('UTC')):%Y-%m-%d %H:%M UTC}" in page  # admins see UTC


def test_a_search_keeps_the_live_band_query(db, world, make_user):
    admin = make_user("admin", email="live-admin@example.com")
    one = db.session.scalar(
        select(Customer)
        .where(Customer.churn_band.isnot(None), Customer.lifecycle != "Lost")
        .order_by(Customer.external_id)
        .limit(1)
    )
    q = one.external_id[:-1]  # a prefix: that customer and any whose id continues it
    assert summaries.for_user(admin, {"q": q}) is None  # the cube has no search: the live query answers
    cards = churn_service.band_summary(admin, {"q": q})
    everyone = db.session.scalars(select(Customer)).all()
    want = [
        c
        for c in everyone
        if c.external_id.lower().startswith(q.lower()) and c.churn_band is not None and c.lifecycle != "Lost"
    ]
    assert cards["as_of"] is None and sum(c["customers"] for c in cards["cards"]) == len(want) >= 1


def test_a_store_managers_pages_use_their_store_only(client, db, world, login_as, monkeypatch):
    north, south = world
    manager = login_as("manager", store=north)
    read = []
    original = summaries._read
    monkeypatch.setattr(summaries, "_read", lambda ids, *rest: read.append(sorted(ids)) or original(ids, *rest))
    for path in ("/", "/tiers", "/churn"):
        page = client.get(path).get_data(as_text=True)
        row = db.session.get(CustomerSummary, north.id)
        local = _utc(row.computed_at).astimezone(ZoneInfo(north.timezone))
        assert f"as of {local:%Y-%m-%d %H:%M %Z}" in page, path  # the viewer's store zone
    assert read and all(ids == [north.id] for ids in read)
    north_only = reference(db, {north.id})
    tiers = tier_service.summary(manager)
    assert sum(c["members"] for c in tiers["cards"]) == sum(g["n"] for g in north_only.values()) == 120
    kpis = dashboard_service.customer_kpis(dashboard_service.resolve_scope(manager, None))
    assert kpis["total"] == 120
    assert kpis["active"] == sum(g["n_active"] for g in north_only.values()) > 0
    assert kpis["recent_buyers"] == sum(g["n_recent"] for g in north_only.values())
    bands = churn_service.band_summary(manager, {})
    savable = sum(g["n"] for k, g in north_only.items() if k[1] is not None and k[2] != "Lost")
    assert sum(c["customers"] for c in bands["cards"]) == savable


def test_chain_numbers_add_up_the_stores_and_equal_the_lists(db, world, make_user):
    north, south = world
    admin = make_user("admin", email="chain-admin@example.com")
    kpis = dashboard_service.customer_kpis(dashboard_service.resolve_scope(admin, None))
    assert kpis["total"] == 200 and kpis["as_of"] is not None
    for item in kpis["lifecycle"]:
        listed = db.session.scalars(customer_service.filtered_customers(item["params"], admin)).all()
        assert item["count"] == len(listed), item["status"]
    high = db.session.scalars(churn_service.at_risk_query({"band": "High"}, admin)).all()
    assert kpis["high"]["count"] == len(high)
    assert kpis["high"]["spend_12m"] == pytest.approx(float(sum(c.spend_12m or 0 for c in high)), abs=0.005)
    for store in (north, south):
        picked = dashboard_service.customer_kpis(dashboard_service.resolve_scope(admin, store.name))
        assert picked["total"] == sum(g["n"] for g in reference(db, {store.id}).values())


# --------------------------------------------------------------------------- the export panel's counts

SIZE_FILTERS = [
    {},
    {"tier": "Gold"},
    {"tier": "none"},
    {"band": "High"},
    {"lifecycle": "Lost"},
    {"include_lost": "1"},
    {"band": "Medium", "include_lost": "1"},
    {"store": "South"},
    {"include_opted_out": "1"},
]


@pytest.mark.parametrize("role", ["admin", "manager"])
def test_export_sizes_from_the_summary_equal_the_live_counts(db, world, make_user, role):
    """The list pages' "N can be exported: M opted out are left out" comes from the stored summary for the
    filters it answers; it equals the two live COUNTs the export itself runs, for each list and scope."""
    from dataclasses import replace

    from portal.services.lists import exports

    north, south = world
    user = make_user(role, email=f"sizes-{role}@example.com", store=north if role == "manager" else None)
    for customer in db.session.scalars(select(Customer).order_by(Customer.id).limit(200)).all()[::7]:
        customer_service.set_consent(customer, "opted_out", "test")
    db.session.commit()
    customer_service.consent_committed()  # the refresh jobs run inline
    for name in ("customers", "at-risk"):
        for params in SIZE_FILTERS:
            got = exports.sizes(name, params, user)
            outside = role == "manager" and params.get("store") == "South"  # another store: nothing, no stored row
            assert (got["as_of"] is None) == outside, (name, params)  # else answered by the stored rows
            export = exports.prepare(name, params, user)
            listed = replace(export, include_opted_out=True).count()
            assert (got["count"], got["listed"]) == (export.count(), listed), (name, params)
            if "include_opted_out" not in params:
                assert got["opted_out"] == listed - export.count()
                assert ("counts as of" in got["note"]) != outside
    assert exports.sizes("customers", {}, user)["opted_out"] > 0
    live = exports.sizes("customers", {"q": "S"}, user)  # a search: counted live
    export = exports.prepare("customers", {"q": "S"}, user)
    assert live["as_of"] is None and live["count"] == export.count()


def test_customers_without_a_store_count_for_the_chain_only(db, world, make_user):
    """Their rows are computed live, and only when the summaries' own read finds that any exist."""
    north, south = world
    admin = make_user("admin", email="storeless-admin@example.com")
    manager = make_user("manager", email="storeless-manager@example.com", store=north)
    grouped = []

    def record(conn, cursor, statement, parameters, context, executemany):
        text = " ".join(statement.split()).lower()
        if "group by" in text and "customers.store_id is null" in text:
            grouped.append(text)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        chain = dashboard_service.customer_kpis(dashboard_service.resolve_scope(admin, None))["total"]
        assert chain == 200 and grouped == []  # none without a store: no live query
        db.session.add(Customer(external_id="NO-STORE-1", sms_consent="unknown"))
        db.session.commit()
        assert dashboard_service.customer_kpis(dashboard_service.resolve_scope(admin, None))["total"] == 201
        assert len(grouped) == 1
        assert dashboard_service.customer_kpis(dashboard_service.resolve_scope(manager, None))["total"] == 120
        assert sum(c["members"] for c in tier_service.summary(admin)["cards"]) == 201  # the "no tier" card too
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
