"""Re-score a few customers (those an API batch of purchases touched) with the full rescore's code.

``rescore_customers`` reads only those customers' lines, computes their features as of the same
reference moment the full rescore would use (the latest purchase over all lines, never after today),
then runs the same functions as ``scoring._rescore_all`` — ``tiers_for``, ``churn_for``, ``clv_for``,
``lifecycle_for`` — and writes the same columns and tier changes for those customers only. Every
step is per customer (the models' population statistics were learnt when they were trained), so the
result equals a full rescore's for them (tests/api/test_incremental.py compares the two).

What it does not do: when the batch moves the reference moment forward (a purchase later than any
before), every other customer's recency would move too; they keep their stored scores until the next
full rescore (after an import or a training run, or ``flask train``), as the pages' "scored as of" says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone

import pandas as pd
from sqlalchemy import bindparam, delete, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from portal import jobs
from portal.extensions import db
from portal.models import Customer, Job, PurchaseLine, RescoreQueue, Store, TierChange
from portal.services import settings as settings_service
from portal.services.scores import aggregates, dataset, scoring
from portal.services.scores import store as score_store
from portal.services.summaries import customers as customer_summaries
from preprocessing import churn as churn_model
from preprocessing import clv
from preprocessing.features import FEATURE_COLUMNS, compute_features, reference_date
from preprocessing.threads import single_threaded

log = logging.getLogger(__name__)

MAX_CUSTOMERS = 20_000  # beyond this a full rescore is the better tool
QUEUE_JOB = "scores.rescore_queued"
GROUP_MOVES_OVER = 20  # a pass with more moves than this sends them grouped (webhooks_out.notify_rescore)
QUEUE_CHUNK = 5_000  # customers per incremental rescore when draining the queue
IN_CHUNK = 900  # ids per IN (...) list: under SQLite's bound-parameter limit


def _lines_of(customer_ids: list[int]) -> pd.DataFrame:
    """The canonical lines (``dataset.load_lines``' columns and types) of these customers only."""
    frames = []
    for start in range(0, len(customer_ids), IN_CHUNK):
        chunk = customer_ids[start : start + IN_CHUNK]
        query = dataset.lines_query(customers_only=True).where(PurchaseLine.customer_id.in_(chunk))
        rows = db.session.execute(query)
        frames.append(pd.DataFrame.from_records([tuple(r) for r in rows], columns=list(rows.keys())))
    lines = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if lines.empty:
        return lines
    for col in ("quantity", "price_per_unit", "total_amount"):
        lines[col] = pd.to_numeric(lines[col], errors="coerce").astype("float64")
    lines["purchase_date"] = pd.to_datetime(lines["purchase_date"]).astype("datetime64[ns]")
    for col in ("customer_id", "transaction_id", "product_id", "store"):
        lines[col] = lines[col].astype(str).astype("category")
    return lines


def rescore_customers(customer_ids: Iterable[int], reason: str = "rescored after new purchases") -> dict:
    """Recompute features, tier, churn, CLV and lifecycle for ``customer_ids`` only; commits.

    Returns:
        {"customers": how many were given, "scored": rows written, "up"/"down": tier moves,
        "as_of": the reference moment, "seconds": time taken}.
    """
    started = time.perf_counter()
    ids = sorted({int(i) for i in customer_ids})
    if len(ids) > MAX_CUSTOMERS:
        raise ValueError(f"An incremental rescore takes at most {MAX_CUSTOMERS:,} customers; run a full rescore.")
    result = {"customers": len(ids), "scored": 0, "up": 0, "down": 0, "as_of": None}
    if ids:
        with single_threaded():
            result.update(_rescore(ids, reason))
        customer_summaries.changed(_stores_of(ids))  # their stores' stored tier/band/KPI counts follow
    result["seconds"] = round(time.perf_counter() - started, 4)
    return result


def _stores_of(ids: list[int]) -> set[int]:
    """The stores of these customers (whose stored summaries their new scores change)."""
    stores: set[int] = set()
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        stores.update(db.session.scalars(select(Customer.store_id).where(Customer.id.in_(chunk)).distinct()))
    return stores


def reference_moment() -> pd.Timestamp | None:
    """``aggregates.reference_moment`` (the latest purchase over all lines, never after today), by index seeks.

    MAX(purchased_at) over every line scans the table (no index leads with the date); the latest line
    of each store is one seek in ``ix_lines_store_date``, and every line has a store.
    """
    latest_of_store = (
        select(func.max(PurchaseLine.purchased_at)).where(PurchaseLine.store_id == Store.id).scalar_subquery()
    )
    value = db.session.execute(select(func.max(latest_of_store)).select_from(Store)).scalar()
    if value is None:
        return None
    return reference_date(pd.Timestamp(value), aggregates.stores_today())


def _rescore(ids: list[int], reason: str) -> dict:
    as_of = reference_moment()
    lines = _lines_of(ids)
    if as_of is None or lines.empty:
        return {**_store(pd.DataFrame(), ids, False, reason), "as_of": None}
    as_of = as_of.as_unit("ns")
    features = compute_features(lines, as_of)
    recent = lines["purchase_date"] > as_of - pd.Timedelta(days=aggregates.SPEND_12M_DAYS)
    spend_12m = lines.loc[recent].groupby("customer_id", observed=True)["total_amount"].sum()
    inputs = scoring.ScoringInputs(
        as_of,
        features,
        spend_12m.reindex(features.index).fillna(0.0),
        # = churn_model.churn_features(lines, as_of), reusing the features computed above
        lambda: churn_model.churn_features_from(features, churn_model.trend_windows(lines, as_of)),
        lambda: clv.rfm_summary(lines, as_of=as_of),
    )
    values = settings_service.all_values()
    frame = features.copy()
    frame["spend_12m"] = inputs.spend_12m
    tiers = scoring.tiers_for(features, values)
    if tiers is not None:
        frame = frame.join(tiers)
    else:
        frame["tier"] = None
    churn = scoring.churn_for(inputs, values)
    if churn is not None:
        frame = frame.join(churn)
    try:
        clv_frame = scoring.clv_for(inputs, values, churn)
    except Exception:  # as in the full rescore: a CLV failure must not stop tiers and churn
        log.exception("CLV scoring failed")
        clv_frame = None
    if clv_frame is not None:
        frame = frame.join(clv_frame)
    frame["lifecycle"] = scoring.lifecycle_for(frame, values)
    counts = _store(frame, ids, tiers is not None, reason)
    counts["as_of"] = as_of.isoformat()
    return counts


OPTIONAL = (
    "churn_probability",
    "churn_band",
    "churn_reasons",
    "p_alive",
    "expected_purchases_90d",
    "clv_12m",
    "lifecycle",
)


def _records(frame: pd.DataFrame) -> Iterator[dict]:
    """``frame.to_dict("records")`` (Python values, NaN kept), built from each column's ``tolist``: pandas
    boxes every value one call at a time, about a third of a 5,000-customer pass."""
    names = list(frame.columns)
    for values in zip(*(frame[name].tolist() for name in names)):
        yield dict(zip(names, values))


def _store(frame: pd.DataFrame, ids: list[int], with_tiers: bool, reason: str) -> dict:
    """``score_store.store`` for these customers only: the same row values, tier changes and clearing."""
    none = score_store._none
    by_external, old_tiers, old_state = {}, {}, {}
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        for cid, ext, tier, band, status in db.session.execute(
            select(Customer.id, Customer.external_id, Customer.tier, Customer.churn_band, Customer.lifecycle).where(
                Customer.id.in_(chunk)
            )
        ):
            by_external[ext] = cid
            old_tiers[cid] = tier
            old_state[cid] = (ext, band, status)
    now = datetime.now(timezone.utc)
    columns = [c for c in FEATURE_COLUMNS if c not in ("first_purchase", "last_purchase")] + ["spend_12m"]
    optional = [c for c in OPTIONAL if c in frame.columns]
    up = down = 0
    rows, changes = [], []
    for external_id, rec in zip(frame.index, _records(frame)):
        cid = by_external.get(str(external_id))
        if cid is None:
            continue
        row = score_store.score_row(cid, rec, columns + optional, now)
        if with_tiers:
            new, old = none(rec["tier"]), old_tiers.get(cid)
            row["tier"] = new
            if new != old:
                if score_store.TIER_RANK[new] > score_store.TIER_RANK[old]:
                    up += 1
                else:
                    down += 1
                why = none(rec.get("tier_reason")) or reason
                changes.append({"customer_id": cid, "at": now, "old_tier": old, "new_tier": new, "reason": why})
        rows.append(row)
    if rows:
        # Core executemany keyed by id: the same rows as the full rescore's ORM bulk update, a third of its cost.
        table = Customer.__table__
        names = [k for k in rows[0] if k != "id"]
        statement = table.update().where(table.c.id == bindparam("_id")).values({n: bindparam(n) for n in names})
        db.session.execute(statement, [{**{n: row[n] for n in names}, "_id": row["id"]} for row in rows])
    if changes:
        db.session.execute(TierChange.__table__.insert(), changes)
    # Customers given but without a line now (e.g. all their lines undone) lose their old scores.
    gone = sorted(set(ids) - {row["id"] for row in rows})
    moved = []
    if gone:
        values = {column: None for column in score_store.SCORE_COLUMNS} | {"scored_at": now}
        if with_tiers:
            values["tier"] = None
            moved = [
                {"customer_id": cid, "at": now, "old_tier": old_tiers[cid], "new_tier": None, "reason": reason}
                for cid in gone
                if old_tiers.get(cid) is not None
            ]
            down += len(moved)
            if moved:
                db.session.execute(TierChange.__table__.insert(), moved)
        db.session.execute(
            update(Customer).where(Customer.id.in_(gone), Customer.scored_at.isnot(None)).values(**values)
        )
    db.session.commit()
    moves = score_store.transitions(rows, changes + moved, old_state)
    return {"scored": len(rows), "up": up, "down": down, "transitions": moves}


# --------------------------------------------------------------------------- the queue (API batches)


def queue(customer_ids: Iterable[int]) -> int:
    """Put customers on the rescore queue and make sure a draining job is queued; commits.

    Why a queue: an incremental rescore costs a fixed ~50 ms plus a little per customer, so rescoring
    each API batch on its own answer capped a till or shop at ~1,000 lines/s. Queued, the customers of
    every batch that arrives while a rescore runs are rescored together by the next one (within
    seconds), and the batch's answer does not wait for the models.

    Returns how many customers were queued.
    """
    ids = sorted({int(i) for i in customer_ids})
    if not ids:
        return 0
    now = datetime.now(timezone.utc)
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    table = RescoreQueue.__table__
    statement = dialect.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.customer_id], set_={"queued_at": statement.excluded.queued_at}
    )
    for start in range(0, len(ids), IN_CHUNK):
        db.session.execute(statement, [{"customer_id": i, "queued_at": now} for i in ids[start : start + IN_CHUNK]])
    db.session.commit()
    waiting = db.session.scalar(select(Job.id).where(Job.func == QUEUE_JOB, Job.status == "queued").limit(1))
    if waiting is None:  # a queued job will read these rows; a running one may be past its last read
        jobs.enqueue(QUEUE_JOB, "Rescore customers with new purchases", scope_store_id=None)
    return len(ids)


def waiting_among(customer_ids: Iterable[int]) -> int:
    """How many of these customers are still waiting on the queue."""
    ids = sorted({int(i) for i in customer_ids})
    return sum(
        db.session.scalar(
            select(func.count()).select_from(RescoreQueue).where(RescoreQueue.customer_id.in_(ids[s : s + IN_CHUNK]))
        )
        or 0
        for s in range(0, len(ids), IN_CHUNK)
    )


def queued() -> int:
    """Customers waiting for their incremental rescore."""
    return db.session.scalar(select(func.count()).select_from(RescoreQueue)) or 0


def drain(progress=None) -> dict:
    """Rescore every queued customer, ``QUEUE_CHUNK`` at a time, oldest first; commits after each chunk.

    A row is removed only if nobody re-queued its customer meanwhile (same ``queued_at``), so lines that
    arrive during a rescore are rescored by the next pass. Webhook events of the moves are sent.
    """
    from portal.services import webhooks_out  # the webhooks import the API's scoring helpers

    done = {"customers": 0, "scored": 0, "up": 0, "down": 0, "passes": 0}
    started = time.perf_counter()
    while True:
        claimed = db.session.execute(
            select(RescoreQueue.customer_id, RescoreQueue.queued_at)
            .order_by(RescoreQueue.queued_at, RescoreQueue.customer_id)
            .limit(QUEUE_CHUNK)
        ).all()
        db.session.commit()
        if not claimed:
            break
        out = rescore_customers([cid for cid, _ in claimed], reason="rescored after new purchases (API)")
        for start in range(0, len(claimed), IN_CHUNK):
            part = claimed[start : start + IN_CHUNK]
            db.session.execute(
                delete(RescoreQueue).where(
                    tuple_(RescoreQueue.customer_id, RescoreQueue.queued_at).in_([(c, q) for c, q in part])
                )
            )
        db.session.commit()
        moves = out.get("transitions", [])
        if len(moves) > GROUP_MOVES_OVER:  # a busy pass: grouped deliveries, as a full rescore sends them
            webhooks_out.notify_rescore(moves, "rescored after new purchases (API)", mode="incremental")
        else:
            webhooks_out.notify(moves)
        done["passes"] += 1
        for key in ("customers", "scored", "up", "down"):
            done[key] += out[key]
        if progress is not None:
            progress(0.5, f"rescored {done['customers']:,} customers")
    done["seconds"] = round(time.perf_counter() - started, 3)
    return done


@jobs.job(QUEUE_JOB)
def drain_job(progress=None, **_kwargs) -> dict:
    """Job entry point: drain the rescore queue."""
    out = drain(progress)
    out["message"] = (
        f"Rescored {out['customers']:,} customers with new purchases ({out['up']} up, {out['down']} down a tier)."
    )
    return out
