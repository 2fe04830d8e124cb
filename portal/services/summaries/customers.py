"""Customer-level summaries (tier cards, band cards, dashboard KPIs) computed when the data changes.

Why: the dashboard, /tiers and /churn each grouped every customer of the scope per request (about
50 ms of CPU per view at 100k customers). The numbers change only when customers change, so each
store keeps one stored "cube" (``customer_summaries``): its customers grouped by (tier, churn band,
lifecycle, active in 90 days, bought in 30 days) with the measures every page needs. A page reads
the rows of its stores (one for a store manager, all for the chain) and adds the groups up.

Layout: groups keyed by (tier, band, lifecycle) only; "active" and "recent" are counts, not keys (no
page filters by them, and as keys they tripled the groups). A row's JSON is compact, columns named once
(``{"version", "columns", "rows": [[...], ...]}``): decoding it is most of a page's read cost.

When it is refreshed:
- at the end of a full rescore (every store; imports and undos end in one),
- after an incremental rescore, an erasure or an API upsert that creates or moves a customer: a
  refresh job per store (``request_refresh``; one queued per store at a time, so a burst of changes
  costs one computation); the pages may lag by the time that job waits (under a minute when the
  job runner is free).
- after a consent change into or out of "opted out" (``n_opted_out``, the export panel's "can be
  exported"): the same coalesced refresh job, queued by ``customers.announce_opt_outs`` and the opt-in paths.

Customers without a store (tests, hand-made rows) are not in any store's row; chain-wide reads add
them from a live query on ``store_id IS NULL`` (an index seek, empty in production data).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone

from sqlalchemy import case, func, literal_column, or_, select

from portal import jobs
from portal.extensions import db
from portal.models import Customer, CustomerSummary, Job, Store
from portal.params import parse_id
from portal.security import user_store_id

log = logging.getLogger(__name__)

JOB = "summaries.refresh_customers"
VERSION = 4  # the cube's layout; a stored row of another layout is recomputed on read
ACTIVE_DAYS = 90  # "active": recency <= 89, the dashboard's "Active, last 90 days" (list filter max_recency=89)
RECENT_DAYS = 30  # "recent": recency <= 29, the dashboard's 30-day buyers
KEYS = ("tier", "churn_band", "lifecycle")
COUNTS = ("n", "n_scored", "n_active", "n_recent", "n_monetary", "n_opted_out")
MONEY = ("sum_monetary", "sum_spend_12m")  # sums of money columns: rounded to cents
# Filters the cube answers; any other list filter (search, recency ranges, consent, ...) needs the live query.
CUBE_FILTERS = frozenset({"store", "tier", "band", "lifecycle", "include_lost"})
LIVE_FILTERS = ("q", "customer", "consent", "min_recency", "max_recency", "days_since_sms")
QUEUED_FOR = timedelta(minutes=10)  # a queued refresh older than this is presumed lost (its runner died)


def _quiet(*_args) -> None:
    """A progress callback that records nothing."""


def _aware(value: datetime | None) -> datetime | None:
    """A stored UTC timestamp as an aware datetime (SQLite returns it naive)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


# --------------------------------------------------------------------------- computing


COLUMNS = (*KEYS, *COUNTS, *MONEY, "sum_value_at_risk", "max_scored_at")


def _groups(where) -> list[list]:
    """The cube rows (``COLUMNS``) of the customers matching ``where`` (erased customers never count):
    one GROUP BY. Constants are literal SQL so the expressions match their GROUP BY on PostgreSQL."""
    one, zero = literal_column("1"), literal_column("0")
    value = func.coalesce(Customer.clv_12m, Customer.spend_12m, zero)
    rows = db.session.execute(
        select(
            Customer.tier,
            Customer.churn_band,
            Customer.lifecycle,
            func.count(),
            func.count(Customer.scored_at),
            func.count(case((Customer.recency <= literal_column(str(ACTIVE_DAYS - 1)), one))),
            func.count(case((Customer.recency <= literal_column(str(RECENT_DAYS - 1)), one))),
            func.count(Customer.monetary),
            func.count(case((Customer.sms_consent == literal_column("'opted_out'"), one))),
            func.sum(Customer.monetary),
            func.sum(Customer.spend_12m),
            func.sum(Customer.churn_probability * value),
            func.max(Customer.scored_at),
        )
        .where(Customer.erased_at.is_(None), where)
        .group_by(Customer.tier, Customer.churn_band, Customer.lifecycle)
    ).all()
    out = []
    for tier, band, status, n, n_scored, n_active, n_recent, n_monetary, n_out, monetary, spend, risk, scored in rows:
        scored = _aware(scored)
        out.append(
            [
                tier,
                band,
                status,
                int(n),
                int(n_scored),
                int(n_active),
                int(n_recent),
                int(n_monetary),
                int(n_out),
                round(float(monetary or 0), 2),  # money: cents
                round(float(spend or 0), 2),
                float(risk or 0),  # an expected value, not a sum of cents: unrounded, as the band cards add it
                scored.astimezone(timezone.utc).isoformat(timespec="microseconds") if scored is not None else None,
            ]
        )
    return out


def compute(store_id: int) -> dict:
    """One store's cube, JSON-ready: {"version", "columns", "rows"} (one GROUP BY over its customers)."""
    return {"version": VERSION, "columns": list(COLUMNS), "rows": _groups(Customer.store_id == store_id)}


def _upsert(store_id: int, data: dict, computed_at: datetime) -> None:
    """Insert or replace a store's row in one statement (two writers of the same store cannot collide)."""
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(CustomerSummary.__table__).values(store_id=store_id, computed_at=computed_at, data=data)
    statement = statement.on_conflict_do_update(
        index_elements=["store_id"],
        set_={"computed_at": statement.excluded.computed_at, "data": statement.excluded.data},
    )
    db.session.execute(statement)


def refresh(store_ids: Iterable[int | None]) -> int:
    """Compute and store the cube of each store in ``store_ids``; commits. Returns how many were stored.

    The time stored is taken before the store's rows are read, so it never claims more than it saw.
    """
    wanted = sorted({int(i) for i in store_ids if i is not None})
    if not wanted:
        return 0
    db.session.commit()  # end the read transaction: the cube sees everything committed so far
    existing = set(db.session.scalars(select(Store.id).where(Store.id.in_(wanted))))
    for store_id in wanted:
        if store_id not in existing:  # deleted meanwhile: its row went with it
            continue
        computed_at = datetime.now(timezone.utc)
        _upsert(store_id, compute(store_id), computed_at)
    db.session.commit()
    return len(existing)


def refresh_all(progress=_quiet) -> int:
    """``refresh`` for every store (after a full rescore); commits."""
    progress(0.0, "customer summaries")
    return refresh(db.session.scalars(select(Store.id)).all())


def refresh_after_rescore() -> int | None:
    """``refresh_all`` for the end of a scoring run: a failure is logged, never fails the scoring."""
    try:
        return refresh_all()
    except Exception:
        db.session.rollback()
        log.exception("customer summary refresh failed")
        return None


@jobs.job(JOB)
def refresh_job(progress=_quiet, store_id: int | None = None) -> dict:
    """Job entry point: refresh one store's cube after a small change (see ``request_refresh``)."""
    done = refresh([store_id])
    return {"message": f"Customer summary refreshed for {done} store{'s' if done != 1 else ''}."}


def request_refresh(store_ids: Iterable[int | None]) -> None:
    """Ask for a background refresh of each store's cube, unless one is already queued for it.

    Call after the change is committed: a queued job has not read the data yet, so it will see the
    change; a running one may have read before it, so another is queued behind it.
    """
    since = datetime.now(timezone.utc) - QUEUED_FOR
    for store_id in sorted({int(i) for i in store_ids if i is not None}):
        queued = db.session.scalar(
            select(Job.id)
            .where(Job.func == JOB, Job.store_id == store_id, Job.status == "queued", Job.created_at >= since)
            .limit(1)
        )
        if queued is None:
            jobs.enqueue(JOB, "Customer summary", scope_store_id=store_id, store_id=store_id)


def changed(store_ids: Iterable[int | None]) -> None:
    """``request_refresh`` for a small change that must not fail the caller's (committed) work."""
    try:
        request_refresh(store_ids)
    except Exception:
        db.session.rollback()
        log.exception("customer summary refresh could not be queued")


# --------------------------------------------------------------------------- reading


def merge(rows: Iterable[list]) -> list[dict]:
    """Cube rows (``COLUMNS``) of one or more stores added up per (tier, band, lifecycle): counts summed,
    money re-rounded to cents, the latest score time. Returns one dict per group, keyed by ``COLUMNS``."""
    by_key: dict[tuple, list[list]] = {}
    for row in rows:
        by_key.setdefault((row[0], row[1], row[2]), []).append(row)
    first_money, risk = len(KEYS) + len(COUNTS), len(COLUMNS) - 2
    out = []
    for parts in by_key.values():
        if len(parts) == 1:
            out.append(dict(zip(COLUMNS, parts[0])))
            continue
        columns = list(zip(*parts))
        merged = [*parts[0][: len(KEYS)]]
        merged += [sum(column) for column in columns[len(KEYS) : first_money]]
        merged += [round(math.fsum(column), 2) for column in columns[first_money:risk]]
        merged.append(math.fsum(columns[risk]))
        scored = [t for t in columns[-1] if t]
        merged.append(max(scored) if scored else None)  # ISO strings of UTC times, one format: they sort as times
        out.append(dict(zip(COLUMNS, merged)))
    return out


def read(store_ids: Iterable[int]) -> tuple[list[dict], datetime | None]:
    """The stored cubes of ``store_ids`` added up per group, and the oldest time they were computed (aware UTC).

    A store without a row (a fresh database, a new store) is computed on the spot once and stored.
    Returns ([] , None) for no store.
    """
    rows, as_of = _read(store_ids)
    return merge(rows), as_of


def _read(store_ids: Iterable[int], with_storeless: bool = False) -> tuple[list[list], datetime | None]:
    """The stored cube rows of ``store_ids`` (not added up) and the oldest time they were computed; with
    ``with_storeless``, the live rows of customers without a store added (see ``storeless``)."""
    ids = sorted({int(i) for i in store_ids})
    if not ids:
        return (storeless() if with_storeless else []), None
    columns = [CustomerSummary.store_id, CustomerSummary.computed_at, CustomerSummary.data]
    if with_storeless:  # asked in the same round trip: are there any (none in imported data)?
        columns.append(_ANY_STORELESS)
    rows = db.session.execute(select(*columns).where(CustomerSummary.store_id.in_(ids))).all()
    any_storeless = with_storeless and (not rows or bool(rows[0][-1]))
    found = {r.store_id: r for r in rows if (r.data or {}).get("version") == VERSION}
    missing = [i for i in ids if i not in found]
    if missing:
        refresh(missing)
        rows = db.session.execute(
            select(CustomerSummary.store_id, CustomerSummary.computed_at, CustomerSummary.data).where(
                CustomerSummary.store_id.in_(missing)
            )
        ).all()
        found.update({r.store_id: r for r in rows})
    extra = storeless() if any_storeless else []
    if not found:
        return extra, None
    rows = [g for r in found.values() for g in r.data["rows"]]
    return [*rows, *extra], min(_aware(r.computed_at) for r in found.values())


_ANY_STORELESS = (
    select(Customer.id).where(Customer.store_id.is_(None), Customer.erased_at.is_(None)).exists().label("any_storeless")
)


def storeless() -> list[list]:
    """The cube rows of customers without a store, computed live (an index seek; none in imported data)."""
    return _groups(Customer.store_id.is_(None))


def answers(params: Mapping[str, str] | None) -> bool:
    """Whether the cube can answer these list filters (store, tier, band, lifecycle, include_lost only)."""
    params = params or {}
    return not any((params.get(key) or "").strip() for key in LIVE_FILTERS)


def scope(user, store: str | None = None) -> tuple[list[int], bool]:
    """The stores whose rows a user's numbers add up, and whether store-less customers count too.

    Mirrors ``filtered_customers``: a store user sees their store; a manager without a store sees
    nothing; others (and the CLI, ``user`` None) every store, narrowed by ``store`` (name or id),
    which never widens a user's scope.
    """
    if user is None:
        own, nothing = None, False
    else:
        own = user_store_id(user)
        nothing = own is None and user.role == "manager"
    if nothing:
        return [], False
    query = select(Store.id)
    if own is not None:
        query = query.where(Store.id == own)
    store = (store or "").strip()
    if store:
        number = parse_id(store)
        query = query.where(or_(Store.name == store, Store.id == (number if number is not None else -1)))
    return sorted(db.session.scalars(query)), own is None and not store


def for_user(user, params: Mapping[str, str] | None = None) -> tuple[list[dict], datetime | None] | None:
    """The cube groups a user's page adds up for ``params``, with their "as of"; None when the
    filters need the live query (see ``answers``).

    Filters applied to the groups as ``filtered_customers`` applies them to rows: store (scope),
    tier (``none``: no tier), band, lifecycle. ``include_lost`` is left to the caller (``savable``).
    """
    params = params or {}
    if not answers(params):
        return None
    store_ids, with_storeless = scope(user, params.get("store"))
    rows, as_of = _read(store_ids, with_storeless)
    groups = merge(rows)
    tier = (params.get("tier") or "").strip()
    band = (params.get("band") or "").strip()
    status = (params.get("lifecycle") or "").strip()
    if tier:
        wanted = None if tier.lower() == "none" else tier
        groups = [g for g in groups if g["tier"] == wanted]
    if band:
        groups = [g for g in groups if g["churn_band"] == band]
    if status:
        groups = [g for g in groups if g["lifecycle"] == status]
    return groups, as_of


def latest_score(groups: Iterable[dict]) -> datetime | None:
    """The latest scoring time among ``groups`` (aware UTC), as the pages' "scored as of"."""
    times = [datetime.fromisoformat(g["max_scored_at"]) for g in groups if g["max_scored_at"]]
    return max(times) if times else None
