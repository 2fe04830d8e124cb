"""Store isolation of saved segments and background jobs: another store's is a 404, like an absent one."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal import jobs
from portal.models import Campaign, Job, SavedSegment
from tests.conftest import login, post_form
from tests.web.test_attackers import RoleClient  # clears g per request: one browser per user


@pytest.fixture()
def two_stores(make_store, make_user):
    """Store A with its manager and a segment saved by them; store B with its manager (the attacker)."""
    a, b = make_store("Uptown"), make_store("Riverside")
    owner = make_user("manager", email="owner@a.example.com", store=a)
    attacker = make_user("manager", email="attacker@b.example.com", store=b)
    return a, b, owner, attacker


def _save_segment(client, name="Uptown regulars", query="band=High"):
    response = post_form(client, "/segments", {"name": name, "list_name": "customers", "query": query})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


def test_a_segment_is_saved_with_its_owners_store_and_hidden_from_other_stores(app, db, two_stores):
    a, _b, owner, attacker = two_stores
    client = RoleClient(app)
    login(client, owner.email)
    _save_segment(client)
    segment = db.session.scalar(select(SavedSegment))
    assert segment.store_id == a.id

    other = RoleClient(app)
    assert login(other, attacker.email).status_code == 302
    page = other.get("/segments").get_data(as_text=True)
    assert "Uptown regulars" not in page
    assert other.get(f"/segments/{segment.id}/count").status_code == 404
    assert post_form(other, f"/segments/{segment.id}/delete", {}, token_from="/segments").status_code == 404
    assert db.session.get(SavedSegment, segment.id) is not None


def test_the_campaign_builder_neither_offers_nor_accepts_another_stores_segment(app, db, two_stores):
    _a, b, owner, attacker = two_stores
    client = RoleClient(app)
    login(client, owner.email)
    _save_segment(client)
    segment = db.session.scalar(select(SavedSegment))

    other = RoleClient(app)
    login(other, attacker.email)
    builder = other.get("/campaigns").get_data(as_text=True)
    assert "Uptown regulars" not in builder
    assert other.get(f"/campaigns/audience?segment={segment.id}").status_code == 404
    assert other.get(f"/campaigns?segment={segment.id}&name=x").status_code == 404
    response = post_form(
        other,
        "/campaigns",
        {"name": "Steal", "segment": str(segment.id), "template": "Hi {name}", "control": "10", "when": "now"},
    )
    assert response.status_code == 404
    assert db.session.scalar(select(Campaign)) is None
    # An id that does not exist at all is the same 404 (never a silent fall-back to the form's filters).
    assert other.get("/campaigns/audience?segment=999999").status_code == 404
    # Their own store's segment still works.
    _save_segment(other, name="Riverside regulars")
    own = db.session.scalar(select(SavedSegment).where(SavedSegment.store_id == b.id))
    assert other.get(f"/campaigns/audience?segment={own.id}").status_code == 200


def test_admins_see_every_stores_segments_and_all_store_segments_stay_with_them(app, db, two_stores, make_user):
    _a, _b, owner, attacker = two_stores
    client = RoleClient(app)
    login(client, owner.email)
    _save_segment(client)
    admin_client = RoleClient(app)
    admin = make_user("admin", email="boss@example.com")
    login(admin_client, admin.email)
    assert "Uptown regulars" in admin_client.get("/segments").get_data(as_text=True)
    _save_segment(admin_client, name="Chain-wide")
    chain = db.session.scalar(select(SavedSegment).where(SavedSegment.name == "Chain-wide"))
    assert chain.store_id is None
    other = RoleClient(app)
    login(other, attacker.email)
    assert "Chain-wide" not in other.get("/segments").get_data(as_text=True)
    assert other.get(f"/segments/{chain.id}/count").status_code == 404


def _job(db, store_id, user_email="someone@example.com") -> Job:
    job = Job(
        id=f"job-{store_id}-{user_email[:4]}",
        func="x.y",
        kwargs={},
        title="Import private.csv",
        user_email=user_email,
        status="done",
        store_id=store_id,
    )
    db.session.add(job)
    db.session.commit()
    return job


def test_another_stores_job_is_a_404_and_chain_wide_jobs_are_for_admins_and_their_starter(
    app, db, two_stores, make_user
):
    a, b, owner, attacker = two_stores
    client = RoleClient(app)
    theirs, ours, chain = _job(db, a.id), _job(db, b.id), _job(db, None, owner.email)
    login(client, attacker.email)
    assert client.get(f"/jobs/{theirs.id}").status_code == 404
    assert client.get(f"/jobs/{chain.id}").status_code == 404
    assert client.get(f"/jobs/{ours.id}").get_json()["title"] == "Import private.csv"
    assert client.get(f"/bundles?job={theirs.id}").status_code == 200  # the page, without their job

    starter = RoleClient(app)
    login(starter, owner.email)
    assert starter.get(f"/jobs/{chain.id}").status_code == 200
    admin_client = RoleClient(app)
    login(admin_client, make_user("admin", email="boss@example.com").email)
    assert all(admin_client.get(f"/jobs/{j.id}").status_code == 200 for j in (theirs, ours, chain))


def test_jobs_record_the_store_they_work_for(app, db, two_stores):
    a, _b, _owner, _attacker = two_stores
    job = jobs.schedule_at(jobs._now(), "campaign.resume", "Resume", scope_store_id=a.id, campaign_id=1)
    assert job.store_id == a.id and job.kwargs == {"campaign_id": 1}
    campaign = Campaign(name="Spring", store_id=a.id, template="Hi", status="waiting")
    db.session.add(campaign)
    db.session.commit()
    from portal.services.campaigns import resuming

    resumed = resuming.schedule_resume(campaign.id, jobs._now())
    assert resumed.store_id == a.id


def test_an_import_job_belongs_to_the_run_store(app, db, two_stores):
    client = RoleClient(app)
    from tests.web.test_imports import upload

    a, _b, owner, attacker = two_stores
    login(client, owner.email)
    response = upload(
        client,
        "transactions",
        "mine.csv",
        b"customer_id,transaction_id,purchase_date,product_id,quantity,price_per_unit\nC1,T1,2025-01-02,P1,1,2.5\n",
        store_id=a.id,
        follow=True,
    )
    assert response.status_code == 200
    from portal.models import ImportRun

    run = db.session.scalar(select(ImportRun))
    from tests.web.test_imports import confirm

    confirm(client, db, run.id)
    job = db.session.get(Job, db.session.get(ImportRun, run.id).job_id)
    assert job.store_id == a.id
    other = RoleClient(app)
    login(other, attacker.email)
    assert other.get(f"/jobs/{job.id}").status_code == 404
