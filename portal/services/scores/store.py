"""Write computed scores to the customer rows, in batches, with their tier-change records."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from sqlalchemy import select, update

from portal.extensions import db
from portal.models import Customer, TierChange
from portal.services.settings import TIERS
from preprocessing.features import FEATURE_COLUMNS

TIER_RANK = {**{tier: len(TIERS) - i for i, tier in enumerate(TIERS)}, None: 0}  # Platinum 4 … Bronze 1
BATCH = 5_000  # customers written per transaction
WRITER_GAP_SECONDS = 0.1


def _none(value):
    """NaN/NaT -> None so the database gets NULL."""
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if value is pd.NaT:
        return None
    return value


def store(frame: pd.DataFrame, with_tiers: bool, reason: str, with_transitions: bool = False) -> dict:
    """Write scores to the customer rows in batches; tier changes become TierChange rows.

    ``with_transitions`` (an outgoing webhook wants them): the result's ``transitions`` lists who moved,
    as ``transitions`` computes it; the customers are then read once with their band and lifecycle.

    Each batch of ``BATCH`` customers commits with its tier changes. One transaction for all would
    hold SQLite's single write lock for the whole write (11 s at 100k customers), and every page
    request that writes (an export's audit line, a login) would wait that long. Meanwhile some
    customers show their new scores and others their previous ones; each row and its tier-change
    record agree, and a rescore that stops half-way is completed by the next one.
    """
    old_state = None
    if with_transitions:  # one read for all three maps, not a third read beside the two below
        ids, old_tiers, old_state = {}, {}, {}
        query = select(Customer.id, Customer.external_id, Customer.tier, Customer.churn_band, Customer.lifecycle)
        for cid, ext, tier, band, status in db.session.execute(query):
            ids[ext], old_tiers[cid], old_state[cid] = cid, tier, (ext, band, status)
    else:
        ids = dict(db.session.execute(select(Customer.external_id, Customer.id)).all())
        old_tiers = dict(db.session.execute(select(Customer.id, Customer.tier)).all())
    moves: list[tuple[str, dict]] = []
    now = datetime.now(timezone.utc)
    # The feature table's columns stored as they are (first/last purchase go to their own datetime columns).
    columns = [c for c in FEATURE_COLUMNS if c not in ("first_purchase", "last_purchase")] + ["spend_12m"]
    optional = [
        c
        for c in (
            "churn_probability",
            "churn_band",
            "churn_reasons",
            "p_alive",
            "p_return_12m",
            "expected_purchases_90d",
            "clv_12m",
            "lifecycle",
        )
        if c in frame.columns
    ]
    up = down = 0
    rows, changes = [], {}
    for external_id, rec in zip(frame.index, frame.to_dict("records")):
        cid = ids.get(str(external_id))
        if cid is None:
            continue
        row = score_row(cid, rec, columns + optional, now)
        if with_tiers:
            new = _none(rec["tier"])
            row["tier"] = new
            old = old_tiers.get(cid)
            if new != old:
                if TIER_RANK[new] > TIER_RANK[old]:
                    up += 1
                else:
                    down += 1
                why = _none(rec.get("tier_reason")) or reason  # the tier review names its own reason
                changes[cid] = {"customer_id": cid, "at": now, "old_tier": old, "new_tier": new, "reason": why}
        rows.append(row)
    for start in range(0, len(rows), BATCH):
        part = rows[start : start + BATCH]
        db.session.execute(update(Customer), part)
        moved = [changes[row["id"]] for row in part if row["id"] in changes]
        if moved:
            db.session.execute(TierChange.__table__.insert(), moved)
        db.session.commit()
        if old_state is not None:
            moves += transitions(part, moved, old_state)
        _yield_to_writers()
    cleared = _clear_unscored({row["id"] for row in rows}, old_tiers, now, reason, with_tiers)
    down += len(cleared)
    if cleared:
        db.session.execute(TierChange.__table__.insert(), cleared)
    db.session.commit()
    if old_state is not None:
        moves += transitions([], cleared, old_state)
    _vacuum_customers()
    counts = {"scored": len(rows), "up": up, "down": down}
    if old_state is not None:
        counts["transitions"] = moves
    return counts


def transitions(rows: list[dict], changes: list[dict], old_state: dict) -> list[tuple[str, dict]]:
    """What moved, for the outgoing webhooks: (event, data) for tier changes, new High risk, newly Lost.

    Args:
        rows: the score rows written (``score_row``'s dicts: ``id``, ``churn_band``, ``lifecycle``, …).
        changes: the TierChange rows recorded with them.
        old_state: customer id -> (external id, churn band, lifecycle) before the write.
    The full rescore and the incremental one both call this, so both send the same events.
    """
    out = []
    for change in changes:
        ext = old_state[change["customer_id"]][0]
        out.append(
            (
                "customer.tier_changed",
                {
                    "customer_id": change["customer_id"],
                    "external_id": ext,
                    "old_tier": change["old_tier"],
                    "new_tier": change["new_tier"],
                    "reason": change["reason"],
                },
            )
        )
    for row in rows:
        ext, band, status = old_state[row["id"]]
        if row.get("churn_band") == "High" and band != "High":
            out.append(
                (
                    "customer.high_risk",
                    {"customer_id": row["id"], "external_id": ext, "churn_probability": row["churn_probability"]},
                )
            )
        if row.get("lifecycle") == "Lost" and status != "Lost":
            out.append(("customer.lost", {"customer_id": row["id"], "external_id": ext}))
    return out


def _vacuum_customers() -> None:
    """PostgreSQL: VACUUM (ANALYZE) the customers just rewritten.

    Rewriting every customer clears the table's visibility map, so the pages' summary counts can no
    longer answer from their covering index alone and read the table too; autovacuum gets there
    only minutes later. Measured at 100k customers: churn page 237 -> 62 ms, tiers 185 -> 59 ms,
    customer list 53 -> 8 ms. VACUUM cannot run in a transaction, hence its own autocommit
    connection; a role that does not own the table gets PostgreSQL's warning, and pages are only
    slower until autovacuum runs.
    """
    if db.engine.dialect.name != "postgresql":
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE) customers")


def _yield_to_writers() -> None:
    """SQLite: pause between batches so a waiting writer (a page request's audit line, a login) gets
    the database's single write lock; its busy handler retries at most every 100 ms."""
    if db.engine.dialect.name == "sqlite":
        time.sleep(WRITER_GAP_SECONDS)


SCORE_COLUMNS = (
    "monetary",
    "frequency",
    "recency",
    "total_quantity",
    "num_unique_products",
    "avg_price_per_unit",
    "store_visit_frequency",
    "active_days",
    "avg_purchase_gap_days",
    "spend_12m",
    "first_purchase_at",
    "last_purchase_at",
    "churn_probability",
    "churn_band",
    "churn_reasons",
    "churn_priority",
    "p_alive",
    "p_return_12m",
    "expected_purchases_90d",
    "clv_12m",
    "lifecycle",
)


def _clear_unscored(scored: set[int], old_tiers: dict, now: datetime, reason: str, with_tiers: bool) -> list[dict]:
    """Customers scored before but without purchases now (their import was undone) lose their old scores.

    Returns the tier changes to record (a tier that disappears is a move down).
    """
    previously = set(db.session.scalars(select(Customer.id).where(Customer.scored_at.isnot(None))))
    gone = sorted(previously - scored)
    if not gone:
        return []
    values = {column: None for column in SCORE_COLUMNS} | {"scored_at": now}
    if with_tiers:
        values["tier"] = None
    for start in range(0, len(gone), BATCH):
        db.session.execute(update(Customer).where(Customer.id.in_(gone[start : start + BATCH])).values(**values))
    if not with_tiers:
        return []
    return [
        {"customer_id": cid, "at": now, "old_tier": old_tiers[cid], "new_tier": None, "reason": reason}
        for cid in gone
        if old_tiers.get(cid) is not None
    ]


def score_row(cid: int, rec: dict, columns: list[str], now: datetime) -> dict:
    """One customer's stored score row from a scoring frame's record: the given columns (NaN -> None),
    whole counts as int, money rounded to cents, and the at-risk list's priority (churn x value).
    The full rescore and the incremental one write the same row through this."""
    row = {
        "id": cid,
        "scored_at": now,
        "first_purchase_at": _wall(rec["first_purchase"]),
        "last_purchase_at": _wall(rec["last_purchase"]),
    }
    for col in columns:
        row[col] = _none(rec[col])
    for col in ("frequency", "recency", "num_unique_products", "store_visit_frequency", "active_days"):
        if row[col] is not None:
            row[col] = int(row[col])
    for col in ("monetary", "spend_12m", "clv_12m"):
        if row.get(col) is not None:
            row[col] = round(float(row[col]), 2)
    if "churn_probability" in row:
        value = row.get("clv_12m") if row.get("clv_12m") is not None else (row["spend_12m"] or 0.0)
        p = row["churn_probability"]
        row["churn_priority"] = None if p is None else float(p) * float(value)
    return row


def _wall(value):
    """A pandas timestamp as a naive datetime (store-local wall time, as imported)."""
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    return pd.Timestamp(value).to_pydatetime()
