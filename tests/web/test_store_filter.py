"""A store filter on /customers, /churn and /tiers for users who see several stores; it never widens a store
user's scope (a manager asking for another store gets nothing of it)."""

import re
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from portal.services.scores import churn as churn_service
from portal.services.scores import model_info
from tests.conftest import login

CHURN_INFO = {
    "state": "ok",
    "fallback": True,
    "params": {"horizon_days": 90, "chosen": "rule"},
    "trained_at": "2026-10-31T00:00:00",
    "data_window": {"to": "2026-10-31"},
    "metrics": {},
}
SEGMENTATION_ENTRY = {
    "trained_at": "2026-10-31T00:00:00",
    "data_window": {"from": "2025-01-01", "to": "2026-10-31"},
    "params": {"min_frequency": 2, "min_monetary": 50, "bar": "fixed", "profile": []},
}


@pytest.fixture()
def chain(db, make_store, make_customer, monkeypatch):
    """Alpha: 2 Gold customers at high risk; Beta: 3 Silver customers at medium risk."""
    monkeypatch.setattr(churn_service, "model_info", lambda: CHURN_INFO)
    monkeypatch.setattr(model_info, "file_entry", lambda name: SEGMENTATION_ENTRY if name == "segmentation" else None)
    monkeypatch.setattr(model_info, "file_state", lambda name: "ok")
    alpha, beta = make_store("Alpha"), make_store("Beta")
    scored = datetime(2026, 10, 31, tzinfo=timezone.utc)
    people = {}
    for store, tier, band, n in ((alpha, "Gold", "High", 2), (beta, "Silver", "Medium", 3)):
        for i in range(n):
            c = make_customer(
                store=store,
                external_id=f"{store.name[0]}{i:04d}",
                tier=tier,
                churn_band=band,
                churn_probability=0.8 if band == "High" else 0.5,
                churn_priority=10.0 + i,
                monetary=Decimal("100"),
                spend_12m=Decimal("100"),
                scored_at=scored,
            )
            people[c.external_id] = c
    return {"alpha": alpha, "beta": beta, "people": people}


def _ids(html: str) -> set[str]:
    return set(re.findall(r'/customers/\d+">([AB]\d{4})</a>', html))


def _tier_members(html: str, tier: str) -> int:
    match = re.search(rf'tier={tier}[^"]*">{tier}</a></h2>\s*<div class="kpi">([\d,]+)</div>', html)
    return int(match.group(1).replace(",", ""))


def _band_customers(html: str, band: str) -> int:
    match = re.search(rf">{band} risk</a></h2>\s*<div class=\"kpi\">([\d,]+)</div>", html)
    return int(match.group(1).replace(",", ""))


@pytest.mark.parametrize("role", ["admin", "marketer"])
def test_users_of_every_store_get_a_store_filter_that_filters(client, make_user, chain, role):
    login(client, make_user(role).email)  # no store: sees the whole chain
    for path in ("/customers", "/churn", "/tiers"):
        html = client.get(path).get_data(as_text=True)
        assert '<option value="Beta"' in html and "All stores" in html, path
    assert _ids(client.get("/customers?store=Beta").get_data(as_text=True)) == {"B0000", "B0001", "B0002"}

    tiers = client.get("/tiers?store=Beta").get_data(as_text=True)
    assert _tier_members(tiers, "Silver") == 3 and _tier_members(tiers, "Gold") == 0
    assert _ids(tiers) == {"B0000", "B0001", "B0002"}
    everywhere = client.get("/tiers").get_data(as_text=True)
    assert _tier_members(everywhere, "Gold") == 2 and _tier_members(everywhere, "Silver") == 3

    churn = client.get("/churn?store=Alpha").get_data(as_text=True)
    assert _band_customers(churn, "High") == 2 and _band_customers(churn, "Medium") == 0
    assert _ids(churn) == {"A0000", "A0001"}


def test_a_store_user_cannot_widen_their_scope_with_the_filter(client, make_user, chain):
    login(client, make_user("manager", store=chain["alpha"]).email)
    for path in ("/customers", "/churn", "/tiers"):
        html = client.get(path).get_data(as_text=True)
        assert '<option value="Beta"' not in html, path  # no store choice offered
    assert _ids(client.get("/customers?store=Beta").get_data(as_text=True)) == set()
    tiers = client.get("/tiers?store=Beta").get_data(as_text=True)
    assert _tier_members(tiers, "Silver") == 0 and _ids(tiers) == set()
    churn = client.get(f"/churn?store={chain['beta'].id}").get_data(as_text=True)
    assert _band_customers(churn, "Medium") == 0 and _ids(churn) == set()
    # their own store, asked for by name, is their usual view
    assert _ids(client.get("/churn?store=Alpha").get_data(as_text=True)) == {"A0000", "A0001"}
    assert client.get("/customers?store=Beta&format=csv").get_data(as_text=True).count("\n") == 1  # header only


def test_an_unknown_store_is_an_empty_list_not_an_error(client, login_as, chain):
    login_as("admin")
    for path in ("/customers", "/churn", "/tiers"):
        response = client.get(path, query_string={"store": "Nowhere'); DROP TABLE customers;--"})
        assert response.status_code == 200 and _ids(response.get_data(as_text=True)) == set()
