"""List pages: filters, server-side sorting, keyset pagination (with ties), store scoping, segments."""

import json
import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.models import AuditEntry, SavedSegment
from portal.services.lists import paging as listing
from tests.conftest import login, post_form


def _ids(html: str) -> list[str]:
    """Customer external ids in page order (the first column links to each customer)."""
    return re.findall(r'/customers/\d+">(C\d+)</a>', html)


def _next_url(html: str) -> str | None:
    match = re.search(r'<a class="page-link" href="([^"#]+)" rel="next">', html)
    return match.group(1).replace("&amp;", "&") if match else None


def _walk(client, url: str) -> list[str]:
    """Follow the Next links from ``url`` and collect every id shown."""
    seen = []
    while url:
        html = client.get(url).get_data(as_text=True)
        seen += _ids(html)
        url = _next_url(html)
    return seen


@pytest.fixture()
def shop(make_store, make_customer):
    """Two stores with a handful of scored customers each."""
    a, b = make_store("Alpha"), make_store("Beta")
    rows = [
        dict(
            store=a,
            name="Ann Gold",
            tier="Gold",
            churn_band="High",
            churn_probability=0.9,
            monetary=Decimal("500"),
            recency=100,
            sms_consent="opted_in",
        ),
        dict(
            store=a,
            name="Bob Silver",
            tier="Silver",
            churn_band="Low",
            churn_probability=0.1,
            monetary=Decimal("90"),
            recency=5,
            sms_consent="opted_out",
        ),
        dict(store=a, name="Cid None", tier=None, churn_band=None, monetary=None, recency=None),
        dict(
            store=b,
            name="Dee Gold",
            tier="Gold",
            churn_band="High",
            churn_probability=0.8,
            monetary=Decimal("700"),
            recency=40,
            sms_consent="opted_in",
        ),
        dict(
            store=b,
            name="Eve Bronze",
            tier="Bronze",
            churn_band="Medium",
            churn_probability=0.5,
            monetary=Decimal("20"),
            recency=200,
        ),
    ]
    customers = [make_customer(**r) for r in rows]
    return {"a": a, "b": b, "c": customers}


def test_filters_narrow_the_list(client, login_as, shop):
    login_as("admin")
    c = shop["c"]
    assert _ids(client.get("/customers?tier=Gold").get_data(as_text=True)) == [c[0].external_id, c[3].external_id]
    assert _ids(client.get("/customers?band=High&store=Beta").get_data(as_text=True)) == [c[3].external_id]
    assert _ids(client.get("/customers?consent=opted_out").get_data(as_text=True)) == [c[1].external_id]
    assert _ids(client.get("/customers?tier=none").get_data(as_text=True)) == [c[2].external_id]
    days = client.get("/customers?min_recency=30&max_recency=150").get_data(as_text=True)
    assert _ids(days) == [c[0].external_id, c[3].external_id]
    assert _ids(client.get("/customers?q=eve").get_data(as_text=True)) == [c[4].external_id]


def test_no_match_says_what_to_do(client, login_as, shop):
    login_as("admin")
    html = client.get("/customers?tier=Platinum").get_data(as_text=True)
    assert "No customer matches these filters" in html and "Clear all filters" in html


def test_empty_list_says_how_to_get_customers(client, login_as):
    login_as("admin")
    html = client.get("/customers").get_data(as_text=True)
    assert "No customers yet" in html and "Import" in html


def test_store_filter_only_offered_to_admins(client, make_user, shop):
    login(client, make_user("manager", store=shop["a"]).email)
    assert 'id="store"' not in client.get("/customers").get_data(as_text=True)


def test_sort_by_spend_both_ways_nulls_last(client, login_as, shop):
    login_as("admin")
    c = shop["c"]
    down = _ids(client.get("/customers?sort=-monetary").get_data(as_text=True))
    assert down == [c[3].external_id, c[0].external_id, c[1].external_id, c[4].external_id, c[2].external_id]
    up = _ids(client.get("/customers?sort=monetary").get_data(as_text=True))
    assert up == [c[4].external_id, c[1].external_id, c[0].external_id, c[3].external_id, c[2].external_id]


def test_sort_headers_toggle_direction(client, login_as, shop):
    login_as("admin")
    html = client.get("/customers?sort=-monetary").get_data(as_text=True)
    assert 'href="?sort=monetary" aria-sort="descending"' in html
    assert 'href="?sort=name"' in html  # names sort A-Z first


def test_unknown_sort_is_ignored(client, login_as, shop):
    login_as("admin")
    assert len(_ids(client.get("/customers?sort=password_hash").get_data(as_text=True))) == 5


@pytest.mark.parametrize("sort", ["-monetary", "monetary", "name", "-churn_probability", ""])
def test_keyset_pages_cover_every_row_once_with_ties(client, login_as, make_customer, monkeypatch, sort):
    """Many customers share the same spend (ties) and some have none (NULLs): pages never skip or repeat."""
    monkeypatch.setattr(listing, "PAGE_SIZE", 4)
    login_as("admin")
    made = []
    for i in range(23):
        spend = None if i % 7 == 0 else Decimal(10 * (i % 3))
        prob = None if i % 5 == 0 else (i % 4) / 4
        made.append(make_customer(name=f"Same {i % 2}", monetary=spend, churn_probability=prob))
    seen = _walk(client, f"/customers?sort={sort}")
    assert sorted(seen) == sorted(c.external_id for c in made) and len(seen) == len(set(seen))
    if sort == "-monetary":
        by_id = {c.external_id: c for c in made}
        values = [by_id[x].monetary for x in seen]
        non_null = [v for v in values if v is not None]
        assert non_null == sorted(non_null, reverse=True) and values[len(non_null) :] == [None] * (23 - len(non_null))


def test_a_garbage_keyset_cursor_is_a_400(client, login_as, shop):
    login_as("admin")  # a hand-edited link: said plainly (every list page: tests/web/test_input_robustness.py)
    assert client.get("/customers?after=not-json").status_code == 400
    assert client.get("/customers?after=" + json.dumps([1, 2, 3])).status_code == 400


def test_manager_never_sees_other_store_in_list_or_filters(client, make_user, shop):
    manager = make_user("manager", store=shop["a"])
    login(client, manager.email)
    a_ids = {x.external_id for x in shop["c"][:3]}
    assert set(_ids(client.get("/customers").get_data(as_text=True))) == a_ids
    # Asking for the other store by name does not widen the scope.
    assert _ids(client.get("/customers?store=Beta").get_data(as_text=True)) == []
    assert set(_ids(client.get("/customers?q=Dee").get_data(as_text=True))) == set()


def test_segment_saved_from_list_and_counted_live(client, login_as, shop, db):
    user = login_as("marketer")
    response = post_form(
        client,
        "/segments",
        {"name": "Gold at risk", "list_name": "customers", "query": "tier=Gold&band=High&after=xyz&format=csv"},
        token_from="/customers",
    )
    assert response.status_code == 302
    segment = db.session.scalar(select(SavedSegment))
    assert segment.query == "tier=Gold&band=High" and segment.owner_email == user.email
    sized = client.get(f"/segments/{segment.id}/count").get_json()
    assert (sized["count"], sized["list"], sized["opted_out"]) == (2, "customers", 0)
    html = client.get("/segments").get_data(as_text=True)
    assert "Gold at risk" in html and f'/segments/{segment.id}/count' in html
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "segment.create"))


def test_filter_count_endpoint_matches_export_rules(client, login_as, shop):
    login_as("admin")
    # Opted-out customers are left out of exports by default, so the live count leaves them out too.
    assert client.get("/segments/count?list=customers").get_json()["count"] == 4
    assert client.get("/segments/count?list=customers&include_opted_out=1").get_json()["count"] == 5
    assert client.get("/segments/count?list=at-risk&band=High").get_json()["count"] == 2
    assert client.get("/segments/count?list=nope").status_code == 400


def test_segment_count_uses_the_viewers_store(client, make_user, shop, db):
    db.session.add(
        SavedSegment(
            name="All Gold",
            list_name="customers",
            query="tier=Gold",
            owner_email="x@example.com",
            store_id=shop["a"].id,
        )
    )
    db.session.add(
        SavedSegment(name="Chain Gold", list_name="customers", query="tier=Gold", owner_email="y@example.com")
    )
    db.session.commit()
    segment, chain = db.session.scalars(select(SavedSegment).order_by(SavedSegment.id)).all()
    login(client, make_user("manager", store=shop["a"]).email)
    assert client.get(f"/segments/{segment.id}/count").get_json()["count"] == 1
    assert client.get(f"/segments/{chain.id}/count").status_code == 404  # all stores': for all-stores users only


def test_segment_needs_a_name_and_a_known_list(client, login_as):
    login_as("marketer")
    response = post_form(client, "/segments", {"name": "", "list_name": "customers", "query": ""})
    assert response.status_code == 400 and "Give the segment a name" in response.get_data(as_text=True)
    response = post_form(client, "/segments", {"name": "x", "list_name": "secrets", "query": ""})
    assert response.status_code == 400


def test_only_owner_or_admin_deletes_a_segment(client, login_as, make_user, db):
    db.session.add(SavedSegment(name="Theirs", list_name="customers", query="", owner_email="other@example.com"))
    db.session.commit()
    segment = db.session.scalar(select(SavedSegment))
    login_as("marketer")
    html = client.get("/segments").get_data(as_text=True)
    assert "Theirs" in html and f"/segments/{segment.id}/delete" not in html
    response = post_form(client, f"/segments/{segment.id}/delete", {}, token_from="/segments")
    assert response.status_code == 403 and db.session.get(SavedSegment, segment.id) is not None
    admin = make_user("admin", email="boss@example.com")
    post_form(client, "/logout", {}, token_from="/segments")
    login(client, admin.email)
    response = post_form(client, f"/segments/{segment.id}/delete", {}, token_from="/segments")
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(SavedSegment, segment.id) is None
