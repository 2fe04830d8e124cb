"""The imports history: who may see which run, the problems report as CSV, and undo."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import delete, false, func, select

from portal import jobs
from portal.extensions import db
from portal.models import (
    ImportProblem,
    ImportRun,
    ImportStore,
    Job,
    OutboxMessage,
    PurchaseLine,
    StockLevel,
    Store,
)
from portal.security import user_store_id
from portal.services import audit
from portal.services.summaries import campaigns as campaign_summaries

RESCORE_JOB = "import.rescore_after_undo"

PROBLEM_HEADERS = ["row", "column", "value", "reason", "severity"]


def runs_for(user):
    """A ``select(ImportRun)`` of the runs the user may see.

    A run that wrote data (import_stores) is shown to a store-bound user only when every store it
    wrote to is theirs, so nobody opens or undoes another store's lines; a run that wrote nothing
    (pending, refused) goes by the store it was recorded against. Admins and chain-wide users see all.
    """
    query = select(ImportRun)
    store_id = user_store_id(user)
    if store_id is None:
        return query.where(false()) if user.role == "manager" else query  # a manager without a store: nothing
    wrote = select(ImportStore.store_id).where(ImportStore.import_id == ImportRun.id)
    elsewhere = wrote.where(ImportStore.store_id != store_id)
    return query.where(~elsewhere.exists(), wrote.exists() | (ImportRun.store_id == store_id))


def written_stores(run_ids: list[int]) -> dict[int, list[str]]:
    """The names of the stores each run wrote to (import_stores), by run id, in name order.

    A multi-store file names every store its rows went to, whatever store the upload form chose
    for rows without a store column; a run that wrote nothing is absent from the answer.
    """
    if not run_ids:
        return {}
    rows = db.session.execute(
        select(ImportStore.import_id, Store.name)
        .join(Store, Store.id == ImportStore.store_id)
        .where(ImportStore.import_id.in_(run_ids))
        .order_by(ImportStore.import_id, Store.name)
    ).all()
    found: dict[int, list[str]] = {}
    for import_id, name in rows:
        found.setdefault(import_id, []).append(name)
    return found


def store_rule(user) -> str | None:
    """The sentence a store-bound user reads above the history: which runs they see, and why; None for others."""
    if user_store_id(user) is None:
        return None
    return (
        "You see the imports whose rows all went to your store. A file whose rows went to several stores "
        "is listed for the admins (and anyone who sees all of those stores), so nobody opens or undoes "
        "another store's lines."
    )


def get_for_user(import_id: int, user) -> ImportRun | None:
    """A run the user may see, or None (another store's run is a 404, not a 403)."""
    return db.session.scalar(runs_for(user).where(ImportRun.id == import_id))


def first_problems(run: ImportRun, limit: int = 100) -> list[ImportProblem]:
    """The first problems by row, for the result page."""
    return db.session.scalars(
        select(ImportProblem)
        .where(ImportProblem.import_id == run.id)
        .order_by(ImportProblem.row, ImportProblem.id)
        .limit(limit)
    ).all()


def _cell(value: str | None) -> str:
    """Neutralise spreadsheet formulas in a value shown back to the user (CSV injection)."""
    value = value or ""
    if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def problems_csv(run: ImportRun, batch: int = 5000) -> Iterator[str]:
    """Every listed problem of a run as CSV text, streamed in batches (any size)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(PROBLEM_HEADERS)
    yield buffer.getvalue()
    last_id = 0
    while True:
        rows = db.session.execute(
            select(
                ImportProblem.id,
                ImportProblem.row,
                ImportProblem.column,
                ImportProblem.value,
                ImportProblem.reason,
                ImportProblem.severity,
            )
            .where(ImportProblem.import_id == run.id, ImportProblem.id > last_id)
            .order_by(ImportProblem.id)
            .limit(batch)
        ).all()
        if not rows:
            return
        buffer.seek(0)
        buffer.truncate()
        for _id, row, column, value, reason, severity in rows:
            writer.writerow([row, _cell(column), _cell(value), reason, severity])
        last_id = rows[-1][0]
        yield buffer.getvalue()


@dataclass
class UndoPlan:
    """What undoing a run would change, said before anything is removed."""

    allowed: bool
    message: str
    lines: int = 0
    customers: int = 0
    stock_rows: int = 0


def undo_plan(run: ImportRun) -> UndoPlan:
    """Say what undo would remove, or why it cannot be undone."""
    if run.undone_at is not None:
        return UndoPlan(False, f"This import was undone on {run.undone_at:%Y-%m-%d %H:%M} UTC by {run.undone_by}.")
    if run.status != "done":
        return UndoPlan(False, "Only a completed import can be undone (this one wrote nothing).")
    if run.kind == "customers":
        return UndoPlan(
            False,
            "A customers import cannot be undone: customer records and the consent trail stay. "
            "Correct customers on their pages, or import a corrected file.",
        )
    if run.kind == "stock":
        rows = db.session.scalar(select(func.count()).select_from(StockLevel).where(StockLevel.import_id == run.id))
        return UndoPlan(
            True,
            f"Undo removes {rows:,} stock levels this import set; products stay. Import a stock "
            "file again to restore stock levels.",
            stock_rows=rows,
        )
    lines, customers = db.session.execute(
        select(func.count(), func.count(PurchaseLine.customer_id.distinct())).where(PurchaseLine.import_id == run.id)
    ).one()
    redeemed = db.session.scalar(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.redeemed_by.like(f"import:{run.id}:%"))
    )
    if redeemed:
        return UndoPlan(
            False,
            f"{redeemed:,} lines of this import redeemed campaign coupons and the campaign "
            "results rely on them, so it cannot be undone.",
            lines=lines,
            customers=customers,
        )
    return UndoPlan(
        True,
        f"Undo removes {lines:,} lines of {customers:,} customers; customer records stay and "
        "everyone is re-scored right after (tiers, churn risk and value follow the remaining "
        "purchases).",
        lines=lines,
        customers=customers,
    )


class UndoRefused(Exception):
    """Undo is not possible; the message says why."""


def undo(run: ImportRun, user_email: str | None) -> UndoPlan:
    """Remove a run's lines (or stock levels) in one transaction, audited."""
    plan = undo_plan(run)
    if not plan.allowed:
        raise UndoRefused(plan.message)
    table = StockLevel if run.kind == "stock" else PurchaseLine
    span = campaign_summaries.import_span(run.id) if run.kind == "transactions" else None
    removed = db.session.execute(delete(table).where(table.import_id == run.id)).rowcount
    run.undone_at = datetime.now(timezone.utc)
    run.undone_by = user_email or "cli"
    run.status = "undone"
    audit.record(
        "import.undo",
        f"import #{run.id}",
        {"kind": run.kind, "file": run.filename, "removed": removed, "customers": plan.customers},
        user_email,
    )
    db.session.commit()
    if span is not None and removed:
        campaign_summaries.purchases_changed(*span)  # campaigns whose window the removed lines were in
    if run.kind == "transactions" and removed:
        jobs.enqueue(RESCORE_JOB, f"Re-score after undoing import #{run.id}", user_email=user_email, import_id=run.id)
    return plan


@jobs.job(RESCORE_JOB)
def rescore_job(progress, import_id: int) -> dict:
    """Job: re-score everyone once an import's lines are gone (features moved for its customers)."""
    from portal.services.scores import scoring

    counts = scoring.rescore_all(reason=f"rescored after undoing import #{import_id}", progress=progress)
    return {"message": f"Re-scored {counts['scored']:,} customers after undoing import #{import_id}.", **counts}


def refuse(run: ImportRun, message: str) -> None:
    """Mark a pending run refused (its file can no longer be read, or it was discarded); nothing was written."""
    run.status, run.message = "refused", message
    db.session.commit()


def discard(run: ImportRun) -> bool:
    """Drop a pending run and its uploaded file before anything was imported; False when it is not pending."""
    if run.status != "pending":
        return False
    if run.stored_path and os.path.exists(run.stored_path):
        os.remove(run.stored_path)
    refuse(run, "Discarded before importing; nothing was written.")
    return True


def job_of(run: ImportRun) -> Job | None:
    """The run's job; a job whose worker died fails its run too (the import's transaction was never committed)."""
    job = db.session.get(Job, run.job_id) if run.job_id else None
    if job is not None and run.status in ("queued", "running"):
        job = jobs.get(job.id)
        if job.status == "failed":
            run.status, run.message = "failed", job.message
            db.session.commit()
    return job
