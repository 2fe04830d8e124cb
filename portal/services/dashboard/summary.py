"""The dashboard's line-level numbers, computed once after scoring and stored, never per page view.

Why: the 30-day revenue, revenue per month and tier, and cohort retention read every purchase line
of the scope (1.6M lines at 100k customers: 10 s per dashboard view on SQLite, which starved the
web threads under load). They change only when purchase lines or tiers change, i.e. after an
import and its rescoring, so ``refresh_all`` runs at the end of ``scoring.rescore_all`` and stores
one row per scope ("all" and one per store) in ``dashboard_summaries``, with the time it was
computed (the page says it).

Freshness: each row keeps a fingerprint of the data it was computed from (``data_version``: the
newest purchase line, the newest tier change, the undone imports; three index probes). A page view
compares it: equal -> the stored numbers are those of the data; different or missing -> the page
shows what is stored (saying it predates the latest change) and asks for a refresh in the
background (one job at a time; none in the half hour after an import, whose own scoring run
refreshes it), so no request ever does the heavy work itself.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import func, select

from portal import jobs
from portal.extensions import db
from portal.models import DashboardSummary, ImportRun, Job, PurchaseLine, Store, TierChange
from portal.services.dashboard import numbers as dashboard

log = logging.getLogger(__name__)

ALL = "all"
JOB = "dashboard.refresh_summary"
ASK_AGAIN_AFTER = timedelta(minutes=15)  # a refresh asked for more recently is not asked for again (unless done)
SCORING_GRACE = timedelta(minutes=30)  # after an import, its own scoring run refreshes the summary


def _quiet(*_args) -> None:
    """A progress callback that records nothing."""


def data_version() -> str:
    """A cheap fingerprint of what the stored numbers depend on: purchase lines and tiers.

    New lines raise the largest line id; an undone import removes lines (and is counted); tiers
    change only by scoring, which records a TierChange. Each part is an index probe.
    """
    last_line, last_tier_change, undone = db.session.execute(
        select(  # one round trip: three scalar subqueries
            select(func.max(PurchaseLine.id)).scalar_subquery(),
            select(func.max(TierChange.id)).scalar_subquery(),
            select(func.count(ImportRun.id)).where(ImportRun.undone_at.isnot(None)).scalar_subquery(),
        )
    ).one()
    return f"lines:{last_line or 0};tiers:{last_tier_change or 0};undone:{undone or 0}"


def storage_key(scope: dashboard.Scope) -> str | None:
    """The stored row a dashboard scope reads: its store's id, "all", or None (a manager without a store)."""
    if scope.store is not None:
        return str(scope.store.id)
    return ALL if scope.can_switch else None


# --------------------------------------------------------------------------- computing and storing


def _to_json(parts: dict) -> dict:
    """The line summary with dates as ISO strings (JSON keeps floats exactly)."""
    revenue = parts["revenue"]
    if revenue is not None:
        revenue = {k: v.isoformat() if isinstance(v, date) else v for k, v in revenue.items()}
    reference = parts["reference"]
    return {**parts, "reference": reference.isoformat() if reference else None, "revenue": revenue}


def _from_json(data: dict) -> dict:
    """The stored line summary with its dates back as ``date``/``datetime`` (as ``line_summary`` returns)."""
    revenue = data.get("revenue")
    if revenue is not None:
        revenue = {**revenue, **{k: date.fromisoformat(revenue[k]) for k in ("start", "end", "before")}}
    reference = data.get("reference")
    return {**data, "reference": datetime.fromisoformat(reference) if reference else None, "revenue": revenue}


def compute(store: Store | None) -> dict:
    """The line summary of one store (None: all stores), JSON-ready, computed directly in the database."""
    return _to_json(dashboard.line_summary(dashboard.Scope(user=None, store=store)))


def refresh_all(progress=_quiet) -> dict:
    """Compute and store the line summary of every scope ("all" and each store); commits.

    The fingerprint is taken before computing, so lines arriving meanwhile make the rows stale
    (and refreshed again), never wrongly fresh.

    Returns:
        {"scopes": n, "seconds": total seconds, "version": the fingerprint stored}.
    """
    version = data_version()
    db.session.commit()  # end the read transaction: the summary sees everything committed so far
    stores = db.session.scalars(select(Store).order_by(Store.id)).all()
    started = time.perf_counter()
    targets = [(ALL, None), *((str(s.id), s) for s in stores)]
    for i, (key, store) in enumerate(targets):
        progress(i / len(targets), f"dashboard summary: {store.name if store else 'all stores'}")
        computed_at = datetime.now(timezone.utc)
        t = time.perf_counter()
        data = compute(store)
        row = db.session.get(DashboardSummary, key) or DashboardSummary(scope=key)
        row.version, row.computed_at, row.data = version, computed_at, data
        row.seconds = round(time.perf_counter() - t, 3)
        db.session.add(row)
        db.session.commit()
    keep = {key for key, _ in targets}
    for row in db.session.scalars(select(DashboardSummary)).all():
        if row.scope not in keep:  # a store that no longer exists
            db.session.delete(row)
    db.session.commit()
    return {"scopes": len(targets), "seconds": round(time.perf_counter() - started, 2), "version": version}


def refresh_after_rescore(progress=_quiet) -> dict | None:
    """``refresh_all`` for the end of a scoring run: a failure is logged, never fails the scoring."""
    try:
        return refresh_all(progress)
    except Exception:
        db.session.rollback()
        log.exception("dashboard summary refresh failed")
        return None


@jobs.job(JOB)
def refresh_job(progress=_quiet) -> dict:
    """Job entry point (asked for by a page that found the stored numbers stale or missing).

    Does nothing when every scope is already current (a scoring run refreshed them meanwhile).
    """
    version = data_version()
    wanted = {ALL, *(str(i) for i in db.session.scalars(select(Store.id)))}
    current = {row.scope for row in db.session.scalars(select(DashboardSummary)) if row.version == version}
    if wanted <= current:
        return {"message": "The dashboard summary was already up to date."}
    out = refresh_all(progress)
    return {**out, "message": f"Dashboard summary computed for {out['scopes']} scopes in {out['seconds']} s."}


def _asked_recently() -> bool:
    """A refresh is queued or running, or failed a moment ago (a failing refresh is not retried per view)."""
    since = datetime.now(timezone.utc) - ASK_AGAIN_AFTER
    return (
        db.session.scalar(
            select(Job.id)
            .where(Job.func == JOB, Job.status.in_(("queued", "running", "failed")), Job.created_at >= since)
            .limit(1)
        )
        is not None
    )


def _scoring_will_refresh() -> bool:
    """An import finished a moment ago (and was not undone since): the scoring run that follows it
    refreshes the summary, so a page need not start a second computation beside it (at 100k
    customers that is 20-70 s of database work beside the scoring run)."""
    finished, undone = db.session.execute(
        select(func.max(ImportRun.finished_at).filter(ImportRun.status == "done"), func.max(ImportRun.undone_at))
    ).one()
    if finished is None:
        return False
    if undone is not None and undone >= finished:  # an undo is not followed by scoring
        return False
    if finished.tzinfo is None:  # stored in UTC; SQLite returns it naive
        finished = finished.replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc) - finished < SCORING_GRACE


def request_refresh() -> None:
    """Ask for a background refresh unless one is queued or running (or has just failed)."""
    if not _asked_recently():
        jobs.enqueue(JOB, "Dashboard summary", scope_store_id=None)  # every store's summary: chain-wide


# --------------------------------------------------------------------------- reading


def for_scope(scope: dashboard.Scope) -> dict:
    """The stored line summary for a dashboard scope, and how current it is.

    Returns:
        {"revenue", "revenue_chart", "cohorts", "reference" (the stored parts, None when missing),
        "computed_at" (aware UTC or None), "stale" (the data changed since), "pending" (nothing stored
        yet: being computed)}.
    """
    key = storage_key(scope)
    if key is None:  # a manager without a store sees no lines: nothing heavy to compute
        return {**dashboard.line_summary(scope), "computed_at": None, "stale": False, "pending": False}
    version = data_version()
    row = db.session.get(DashboardSummary, key)
    if row is None or (row.version != version and not _scoring_will_refresh()):
        request_refresh()  # with JOBS_INLINE (tests) this has computed it already
        db.session.expire_all()
        row = db.session.get(DashboardSummary, key)
    if row is None:
        return {
            "reference": None,
            "revenue": None,
            "revenue_chart": None,
            "cohorts": None,
            "computed_at": None,
            "stale": False,
            "pending": True,
        }
    computed_at = row.computed_at
    if computed_at.tzinfo is None:  # stored in UTC; SQLite returns it naive
        computed_at = computed_at.replace(tzinfo=timezone.utc)
    return {**_from_json(row.data), "computed_at": computed_at, "stale": row.version != version, "pending": False}
