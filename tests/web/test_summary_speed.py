"""Summaries that stay fast on a large store: the dashboard's stored line summary, one-pass counts.

The dashboard's line-level numbers (30-day revenue, revenue by tier, cohorts) are computed after
scoring and stored (``dashboard_summary``); these tests check that the stored copy equals the
direct computation, follows a rescore, says when it is stale, and that a page view never computes
it. The one-pass tier, band and KPI counts are checked against plain GROUP BY queries.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from sqlalchemy import func, select

from portal.models import Customer, DashboardSummary, ImportRun, Job, PurchaseLine, TierChange
from portal.services import settings as settings_service
from portal.services.dashboard import numbers as dashboard_service
from portal.services.dashboard import summary as dashboard_summary
from portal.services.scores import churn as churn_service
from portal.services.scores import scoring, training
from portal.services.scores import tiers as tier_service
from tests.conftest import prefixed_lines, synthetic_lines

COLUMNS = [
    "customer_id",
    "transaction_id",
    "purchase_date",
    "product_id",
    "product_name",
    "quantity",
    "price_per_unit",
    "total_amount",
]


@pytest.fixture()
def two_stores(db, seed_lines, make_store):
    """Two stores with lines, tiers and churn scores (the summary stored by the rescore)."""
    north = seed_lines(synthetic_lines(n_customers=160, seed=3), store=make_store("North"))
    south = seed_lines(prefixed_lines(synthetic_lines(n_customers=90, seed=5), "S"), store=make_store("South"))
    settings_service.update({"tiers.bar": "fixed", "tier.min_frequency": "5", "tier.min_monetary": "2000"})
    training.train_segmentation(rescore=False)
    training.train_churn(rescore=False)
    scoring.rescore_all()
    return north, south


def _scopes(admin, north, south):
    return {
        "all": dashboard_service.Scope(user=admin, can_switch=True),
        str(north.id): dashboard_service.Scope(user=admin, store=north, can_switch=True),
        str(south.id): dashboard_service.Scope(user=admin, store=south, can_switch=True),
    }


def _parts(summary: dict) -> dict:
    return {k: summary[k] for k in ("reference", "revenue", "revenue_chart", "cohorts")}


def _refuse(*_a, **_k):
    raise AssertionError("the page computed a line summary")


def test_stored_summary_equals_the_direct_computation(db, two_stores, make_user):
    north, south = two_stores
    scopes = _scopes(make_user("admin"), north, south)
    rows = {r.scope: r for r in db.session.scalars(select(DashboardSummary))}
    assert set(rows) == {"all", str(north.id), str(south.id)}  # the rescore stored every scope
    for key, scope in scopes.items():
        stored = dashboard_summary.for_scope(scope)
        assert not stored["stale"] and not stored["pending"] and stored["computed_at"] is not None
        direct = dashboard_service.line_summary(scope)
        assert _parts(stored) == direct, key
        assert direct["revenue_chart"]["datasets"] and direct["cohorts"]["rows"]  # real numbers, not empties
    everyone = dashboard_summary.for_scope(scopes["all"])["revenue"]["current"]
    assert everyone == pytest.approx(
        sum(dashboard_summary.for_scope(s)["revenue"]["current"] for k, s in scopes.items() if k != "all")
    )


def test_a_rescore_refreshes_the_stored_summary(db, two_stores, make_user, seed_lines):
    north, south = two_stores
    scope = _scopes(make_user("admin"), north, south)["all"]
    before = db.session.get(DashboardSummary, "all")
    old_version, old_time = before.version, before.computed_at
    old_revenue = dashboard_summary.for_scope(scope)["revenue"]["current"]
    # A later purchase of 1,000.00 in the North store (a new customer), after the current reference day.
    day = pd.Timestamp(dashboard_service.reference_time()) + pd.Timedelta(days=1)
    seed_lines(
        pd.DataFrame([("LATE1", "TLATE1", day, "PLATE1", "Late 1", 1, 1000.0, 1000.0)], columns=COLUMNS), store=north
    )
    assert dashboard_summary.data_version() != old_version  # the stored copy is now behind the data
    scoring.rescore_all()
    db.session.expire_all()
    after = db.session.get(DashboardSummary, "all")
    assert after.version == dashboard_summary.data_version() and after.computed_at >= old_time
    stored = dashboard_summary.for_scope(scope)
    assert _parts(stored) == dashboard_service.line_summary(scope)
    assert stored["reference"].date() == day.date()
    assert stored["revenue"]["end"] == day.date()
    assert stored["revenue"]["current"] != old_revenue


def test_the_page_reads_the_stored_numbers_and_says_when_they_were_computed(
    client, login_as, db, two_stores, monkeypatch
):
    login_as("admin")
    for name in ("revenue_kpis", "revenue_by_tier", "cohort_retention"):
        monkeypatch.setattr(dashboard_service, name, _refuse)
    page = client.get("/").get_data(as_text=True)
    assert 'data-chart="revenue-tier-chart"' in page and "cohort-table" in page
    assert "Revenue, last 30 days" in page and "these were computed" in page
    assert "have changed since" not in page and "being computed" not in page


def test_a_stale_summary_is_shown_with_a_note_and_one_refresh_is_asked(
    client, login_as, db, two_stores, seed_lines, monkeypatch
):
    north, _ = two_stores
    asked = []
    monkeypatch.setattr(dashboard_summary.jobs, "enqueue", lambda func, title, **kw: asked.append(func))
    for name in ("revenue_kpis", "revenue_by_tier", "cohort_retention"):
        monkeypatch.setattr(dashboard_service, name, _refuse)
    day = pd.Timestamp(dashboard_service.reference_time()) + pd.Timedelta(days=1)
    seed_lines(
        pd.DataFrame([("LATE2", "TLATE2", day, "PLATE2", "Late 2", 1, 50.0, 50.0)], columns=COLUMNS), store=north
    )
    login_as("admin")
    page = client.get("/").get_data(as_text=True)
    assert "Purchases or tiers have changed since; they are being recomputed in the background" in page
    assert 'data-chart="revenue-tier-chart"' in page  # the previous numbers stay visible meanwhile
    assert asked == [dashboard_summary.JOB]
    # A refresh already queued is not asked for again.
    db.session.add(Job(id="queued-refresh", func=dashboard_summary.JOB, title="Dashboard summary", status="queued"))
    db.session.commit()
    client.get("/")
    assert asked == [dashboard_summary.JOB]


def test_right_after_an_import_its_scoring_run_refreshes_the_summary(
    client, login_as, db, two_stores, seed_lines, monkeypatch
):
    north, _ = two_stores
    asked = []
    monkeypatch.setattr(dashboard_summary.jobs, "enqueue", lambda func, title, **kw: asked.append(func))
    now = datetime.now(timezone.utc)
    run = ImportRun(kind="transactions", filename="new.csv", status="done", finished_at=now - timedelta(minutes=2))
    db.session.add(run)
    day = pd.Timestamp(dashboard_service.reference_time()) + pd.Timedelta(days=1)
    seed_lines(
        pd.DataFrame([("LATE3", "TLATE3", day, "PLATE3", "Late 3", 1, 50.0, 50.0)], columns=COLUMNS), store=north
    )
    login_as("admin")
    assert "they are being recomputed" in client.get("/").get_data(as_text=True)
    assert asked == []  # the import's own scoring run will refresh it: no second computation
    run.undone_at = now  # an undo is not followed by scoring: a refresh is asked for at once
    db.session.commit()
    client.get("/")
    assert asked == [dashboard_summary.JOB]
    run.undone_at, run.finished_at = None, now - timedelta(hours=2)  # scoring should long have refreshed it
    db.session.execute(Job.__table__.delete())
    db.session.commit()
    asked.clear()
    client.get("/")
    assert asked == [dashboard_summary.JOB]


def test_a_failed_refresh_is_not_asked_for_again_on_every_view(client, login_as, db, two_stores, monkeypatch):
    asked = []
    monkeypatch.setattr(dashboard_summary.jobs, "enqueue", lambda func, title, **kw: asked.append(func))
    db.session.add(Job(id="failed-refresh", func=dashboard_summary.JOB, title="Dashboard summary", status="failed"))
    db.session.execute(DashboardSummary.__table__.delete())
    db.session.commit()
    login_as("admin")
    assert "being computed" in client.get("/").get_data(as_text=True)
    assert asked == []
    db.session.execute(Job.__table__.delete())  # once the failure is old news (or gone), a view asks again
    db.session.commit()
    client.get("/")
    assert asked == [dashboard_summary.JOB]


def test_without_a_stored_summary_the_page_says_it_is_being_computed(client, login_as, db, two_stores, monkeypatch):
    asked = []
    monkeypatch.setattr(dashboard_summary.jobs, "enqueue", lambda func, title, **kw: asked.append(func))
    for name in ("revenue_kpis", "revenue_by_tier", "cohort_retention"):
        monkeypatch.setattr(dashboard_service, name, _refuse)
    db.session.execute(DashboardSummary.__table__.delete())
    db.session.commit()
    login_as("admin")
    page = client.get("/").get_data(as_text=True)
    assert "are being computed from the purchase lines" in page and "Being computed" in page
    assert 'data-chart="revenue-tier-chart"' not in page and "cohort-table" not in page
    assert 'data-chart="tier-chart"' in page  # the live numbers are there
    assert asked == [dashboard_summary.JOB]


def test_the_refresh_job_computes_missing_scopes_and_skips_when_current(db, two_stores, monkeypatch):
    north, _ = two_stores
    assert "already up to date" in dashboard_summary.refresh_job()["message"]
    db.session.delete(db.session.get(DashboardSummary, str(north.id)))
    db.session.commit()
    out = dashboard_summary.refresh_job()
    assert out["scopes"] == 3 and db.session.get(DashboardSummary, str(north.id)) is not None
    monkeypatch.setattr(dashboard_summary, "refresh_all", _refuse)
    assert "already up to date" in dashboard_summary.refresh_job()["message"]


def test_the_fingerprint_follows_lines_tiers_and_undone_imports(db, two_stores):
    north, _ = two_stores
    versions = [dashboard_summary.data_version()]
    customer = db.session.scalar(select(Customer).order_by(Customer.id).limit(1))
    db.session.add(TierChange(customer_id=customer.id, old_tier=None, new_tier="Gold", reason="test"))
    db.session.commit()
    versions.append(dashboard_summary.data_version())
    db.session.add(
        ImportRun(kind="transactions", filename="x.csv", status="undone", undone_at=dashboard_service.reference_time())
    )
    db.session.commit()
    versions.append(dashboard_summary.data_version())
    line = db.session.scalar(select(PurchaseLine).order_by(PurchaseLine.id).limit(1))
    db.session.add(
        PurchaseLine(
            transaction_ref="TNEW",
            product_id=line.product_id,
            customer_id=customer.id,
            store_id=north.id,
            purchased_at=line.purchased_at,
            quantity=1,
            unit_price=1,
            amount=1,
        )
    )
    db.session.commit()
    versions.append(dashboard_summary.data_version())
    assert len(set(versions)) == 4


def test_a_failing_summary_never_fails_the_scoring(db, two_stores, monkeypatch):
    def broken(_scope):
        raise RuntimeError("summary broke")

    monkeypatch.setattr(dashboard_service, "line_summary", broken)
    counts = scoring.rescore_all()
    assert counts["scored"] == 250


def test_reference_time_is_the_latest_line_of_any_store(db, two_stores):
    latest = db.session.scalar(select(func.max(PurchaseLine.purchased_at)))
    assert dashboard_service.reference_time() == latest


# --------------------------------------------------------------------------- one-pass counts


def test_tier_cards_equal_a_plain_group_by(db, two_stores, make_user):
    admin = make_user("admin", email="tiers-admin@example.com")
    rows = {
        t: (n, float(s or 0), a)
        for t, n, s, a in db.session.execute(
            select(Customer.tier, func.count(), func.sum(Customer.monetary), func.avg(Customer.monetary))
            .where(Customer.erased_at.is_(None))
            .group_by(Customer.tier)
        ).all()
    }
    cards = {c["tier"]: c for c in tier_service.summary(admin)["cards"]}
    assert len([t for t in rows if t]) >= 2  # tiers were assigned
    total = sum(r[1] for r in rows.values())
    for tier, (n, spend, avg) in rows.items():
        assert cards[tier]["members"] == n
        assert cards[tier]["revenue"] == pytest.approx(spend, abs=0.005)
        assert cards[tier]["share_revenue"] == pytest.approx(spend / total)
        assert cards[tier]["avg_spend"] == pytest.approx(float(avg))
    assert tier_service.summary(admin)["scored_at"] is not None


def test_band_cards_equal_a_plain_group_by_with_filters(db, two_stores, make_user):
    north, _ = two_stores
    admin = make_user("admin", email="bands-admin@example.com")
    value = func.coalesce(Customer.clv_12m, Customer.spend_12m, 0)
    query = (
        select(
            Customer.churn_band,
            func.count(),
            func.sum(Customer.spend_12m),
            func.sum(Customer.churn_probability * value),
        )
        .where(Customer.erased_at.is_(None), Customer.churn_band.isnot(None), Customer.store_id == north.id)
        .group_by(Customer.churn_band)
    )
    savable = query.where(Customer.lifecycle.is_distinct_from("Lost"))
    for params, plain, total in (
        ({"store": "North"}, savable, None),  # the default: lost customers are not counted as savable
        ({"store": "North", "include_lost": "1"}, query, 160),
    ):
        rows = {b: (n, float(s or 0), float(r or 0)) for b, n, s, r in db.session.execute(plain).all()}
        cards = {c["band"]: c for c in churn_service.band_summary(admin, params)["cards"]}
        assert sum(c["customers"] for c in cards.values()) == (total or sum(n for n, _, _ in rows.values()))
        for band, card in cards.items():
            n, spend, risk = rows.get(band, (0, 0.0, 0.0))
            assert card["customers"] == n
            assert card["revenue_12m"] == pytest.approx(spend, abs=0.005)
            assert math.isclose(card["value_at_risk"], risk, rel_tol=1e-9, abs_tol=1e-6)


def test_dashboard_kpis_equal_their_lists_counts(db, two_stores, make_user):
    north, _ = two_stores
    manager = make_user("manager", store=north)
    kpis = dashboard_service.customer_kpis(dashboard_service.resolve_scope(manager, None))
    mine = select(func.count()).select_from(Customer).where(Customer.store_id == north.id, Customer.erased_at.is_(None))
    assert kpis["total"] == db.session.scalar(mine) == 160
    assert kpis["active"] == db.session.scalar(mine.where(Customer.recency <= 89))
    assert kpis["recent_buyers"] == db.session.scalar(mine.where(Customer.recency <= 29))
    for item in kpis["tiers"]:
        assert item["count"] == db.session.scalar(mine.where(Customer.tier == item["tier"]))
    high = db.session.scalar(
        select(func.sum(Customer.spend_12m)).where(Customer.store_id == north.id, Customer.churn_band == "High")
    )
    assert kpis["high"]["spend_12m"] == pytest.approx(float(high or 0), abs=0.005)
