"""The audit page (issue #21, item 17): readable details, filters by date range, user and action with keyset
paging, and one audit line for every job when it finishes or fails (written by the job runner)."""

from __future__ import annotations

import html
import re
from datetime import datetime, timezone

from sqlalchemy import select

from portal import jobs
from portal.models import AuditEntry
from portal.services import audit


@jobs.job("tests.web.test_audit_log.ok_job")
def ok_job(progress, n: int = 1):
    progress(1.0, "halfway")
    return {"message": f"mined {n} rules"}


@jobs.job("tests.web.test_audit_log.refused_job")
def refused_job(progress):
    raise jobs.JobError("no baskets to mine")


@jobs.job("tests.web.test_audit_log.crashing_job")
def crashing_job(progress):
    raise RuntimeError("internal detail")


def _entry(db, at: datetime, action: str, user: str, detail=None, target=None) -> AuditEntry:
    entry = AuditEntry(at=at, action=action, user_email=user, detail=detail, target=target)
    db.session.add(entry)
    db.session.commit()
    return entry


def _rows(page_html: str) -> list[str]:
    body = page_html.split('id="audit-log"', 1)[1] if 'id="audit-log"' in page_html else ""
    return re.findall(r"<tr><td data-label=\"When\".*?</tr>", body, flags=re.S)


def test_details_read_as_key_value_text_not_json(client, login_as, db):
    login_as("admin")
    _entry(
        db,
        datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc),
        "export",
        "m@example.com",
        {"list": "customers", "filter": "band=High&tier=Gold", "rows": 1234, "include_opted_out": False},
        "customers",
    )
    page = client.get("/audit").get_data(as_text=True)
    assert "\\u0026" not in page and "{&#34;" not in page and '{"list"' not in page
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))
    assert "filter: band=High&tier=Gold" in text
    assert "rows: 1,234" in text and "include opted out: no" in text
    assert "When (UTC)" in text and "2026-11-20 09:00 UTC" in text


def test_filters_by_date_range_user_and_action_and_keep_them_across_pages(client, login_as, db):
    login_as("admin")
    for day in (10, 11, 12, 13):
        for n in range(30):
            _entry(db, datetime(2026, 11, day, 12, n, tzinfo=timezone.utc), "settings.change", "ann@example.com")
        _entry(db, datetime(2026, 11, day, 13, 0, tzinfo=timezone.utc), "export", "bob@example.com")
    response = client.get("/audit?from=2026-11-11&to=2026-11-12&user=ann&action=settings.change")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    first = _rows(page)
    assert first and all("ann@example.com" in r and "settings.change" in r for r in first)
    assert all(re.search(r"2026-11-1[12] 12:", r) for r in first)
    nxt = re.search(r'href="([^"]*after=[^"]*)"', page)
    assert nxt, "60 entries match: there is a next page"
    link = html.unescape(nxt.group(1))
    for kept in ("from=2026-11-11", "to=2026-11-12", "user=ann", "action=settings.change"):
        assert kept in link
    second = _rows(client.get(link).get_data(as_text=True))
    assert len(first) + len(second) == 60
    assert all(re.search(r"2026-11-1[12] 12:", r) for r in second)
    # the service's range is whole days in the viewer's zone, both ends included
    query = audit.entries_query(date_from=datetime(2026, 11, 13).date(), date_to=datetime(2026, 11, 13).date())
    assert {e.action for e in db.session.scalars(query)} == {"settings.change", "export"}
    assert len(db.session.scalars(query).all()) == 31
    only_bob = _rows(client.get("/audit?user=bob").get_data(as_text=True))
    assert len(only_bob) == 4 and all("bob@example.com" in r for r in only_bob)


def test_date_range_uses_the_viewers_store_time_zone(db, make_store):
    # 03:30 UTC on the 12th is still the 11th in New York
    _entry(db, datetime(2026, 11, 12, 3, 30, tzinfo=timezone.utc), "login", "x@example.com")
    day = datetime(2026, 11, 11).date()
    in_ny = db.session.scalars(audit.entries_query(date_from=day, date_to=day, tz="America/New_York")).all()
    in_utc = db.session.scalars(audit.entries_query(date_from=day, date_to=day, tz="UTC")).all()
    assert len(in_ny) == 1 and in_utc == []


def test_a_bad_date_is_explained_not_a_500(client, login_as, db):
    login_as("admin")
    response = client.get("/audit?from=11/12/2026")
    assert response.status_code == 400
    assert "is not a date; use YYYY-MM-DD" in html.unescape(response.get_data(as_text=True))


def test_store_users_cannot_read_the_audit_log(client, login_as):
    login_as("manager")
    assert client.get("/audit?action=job").status_code == 403


def test_every_job_leaves_one_audit_line_when_it_finishes_or_fails(app, db):
    done = jobs.enqueue("tests.web.test_audit_log.ok_job", "Mine bundles", "ann@example.com", n=3)
    refused = jobs.enqueue("tests.web.test_audit_log.refused_job", "Mine bundles", "ann@example.com")
    crashed = jobs.enqueue("tests.web.test_audit_log.crashing_job", "Crash")
    db.session.expire_all()
    lines = db.session.scalars(select(AuditEntry).where(AuditEntry.action.like("job.%")).order_by(AuditEntry.id)).all()
    by_job = {e.detail["job"]: e for e in lines}
    assert len(lines) == 3 and set(by_job) == {done.id, refused.id, crashed.id}
    assert by_job[done.id].action == "job.done" and by_job[done.id].target == "tests.web.test_audit_log.ok_job"
    assert by_job[done.id].detail["message"] == "mined 3 rules" and by_job[done.id].user_email == "ann@example.com"
    assert by_job[refused.id].action == "job.failed" and by_job[refused.id].detail["message"] == "no baskets to mine"
    assert by_job[crashed.id].action == "job.failed" and by_job[crashed.id].user_email == "worker"
    assert "internal detail" not in str(by_job[crashed.id].detail)
    assert all("seconds" in e.detail for e in lines)
    jobs.run_job(done.id)  # a finished job is left alone: no second line
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.id > lines[-1].id)) is None


def test_bundle_mining_leaves_an_audit_line(app, db):
    job = jobs.enqueue("bundles.mine", "Mine bundles", "ann@example.com")  # no stock file yet: it fails
    db.session.expire_all()
    line = db.session.scalar(select(AuditEntry).where(AuditEntry.action.like("job.%")))
    assert line is not None and line.target == "bundles.mine" and line.detail["job"] == job.id
    assert line.action == "job.failed" and "No stock file imported yet" in line.detail["message"]
