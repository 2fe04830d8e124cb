"""Purchase lines sent through the API: the importer's rules, all or nothing, idempotent, then rescored.

A batch is checked exactly as a file would be (``preprocessing.columns.validate_chunk`` then
``staging.prepare``); any row error refuses the whole batch with every problem listed (row = the
line's index in the batch). A valid batch is staged and merged by the importer's own SQL in one
transaction that also records an ``ImportRun`` (source "api", so the imports history lists it and an
admin can undo it) and the ``Idempotency-Key`` with the answer: a replay gets that answer back, a
different body under the same key is refused. Then the touched customers are queued for an incremental
rescore (``scores.incremental.queue``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import ApiIdempotencyKey, AuditEntry, Customer, ImportRun, Store
from portal.services.importer import merge, staging
from portal.services.importer.runs import _latest_purchase_time, default_store, find_store
from portal.services.summaries import campaigns as campaign_summaries
from preprocessing.columns import Mapping, validate_chunk
from preprocessing.columns.validation import TRANSACTION_COLUMNS

log = logging.getLogger(__name__)

# The transaction columns a request line may carry, named as in a file (the phone column as the demo files
# name it, "Mobile"), so the importer's mapping and checks read them unchanged.
FIELDS = tuple("Mobile" if c == "phone" else c for c in TRANSACTION_COLUMNS if c not in ("line_no", "source_row"))
MAPPING = {field: field for field in FIELDS if field != "Mobile"} | {"phone": "Mobile"}


class BatchRefused(Exception):
    """A batch that was not written: ``status`` (403, 409, 422) and a message, with row problems for 422."""

    def __init__(self, status: int, message: str, problems: list[dict] | None = None):
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems


@dataclass
class BatchResult:
    status: int
    body: dict
    replayed: bool = False
    customer_ids: list[int] | None = None


def request_hash(payload) -> str:
    """A fingerprint of the request body (canonical JSON), to tell a replay from a different request."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def replay(token_id: int, key: str, digest: str) -> BatchResult | None:
    """The stored answer for (token, key); BatchRefused(409) when the key was used for another body."""
    found = db.session.scalar(
        select(ApiIdempotencyKey).where(ApiIdempotencyKey.token_id == token_id, ApiIdempotencyKey.key == key)
    )
    if found is None:
        return None
    if found.request_hash != digest:
        raise BatchRefused(
            409, "This Idempotency-Key was already used for a different batch; use a new key for new lines."
        )
    return BatchResult(found.status, found.response, replayed=True)


def _text_frame(lines: list[dict], default_store: str | None) -> pd.DataFrame:
    """The batch as the text table a file would give (every cell a string, '' when empty)."""
    records = []
    for line in lines:
        record = {}
        for field in FIELDS:
            value = line.get("phone" if field == "Mobile" else field)
            if field == "store" and not value:
                value = default_store
            if value is None:
                record[field] = ""
            elif isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
                record[field] = str(int(value))
            else:
                record[field] = str(value)
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=list(FIELDS))
    frame.index = pd.RangeIndex(len(frame))  # row numbers = the lines' indexes in the batch
    return frame


def _context(store: Store, only_store_id: int | None) -> staging.Context:
    """The importer's checking context for a batch whose lines default to ``store`` (``runs._context``)."""
    stores = db.session.scalars(select(Store).order_by(Store.name)).all()
    return staging.Context(
        kind="transactions",
        mapping=dict(MAPPING),
        store_id=store.id,
        store_name=store.name,
        stores={s.name.strip().casefold(): s.id for s in stores},
        store_names=[s.name for s in stores],
        only_store_id=only_store_id,
        date_limits={s.id: _latest_purchase_time(s) for s in stores},
    )


def _problems(frames: list[pd.DataFrame], level: str) -> list[dict]:
    out = []
    for frame in frames:
        if frame is None or not len(frame):
            continue
        for rec in frame[frame["level"] == level].to_dict("records"):
            value = rec.get("value")
            out.append(
                {
                    "row": int(rec["row"]),
                    "column": str(rec.get("field") or rec["column"]),
                    "value": None
                    if value is None or (isinstance(value, float) and pd.isna(value))
                    else str(value)[:200],
                    "reason": str(rec["reason"]),
                }
            )
    return sorted(out, key=lambda p: p["row"])


def submit(lines: list[dict], store_name: str | None, user, token, key: str, digest: str) -> BatchResult:
    """Check and write one batch for ``user`` (through ``token``); see the module docstring.

    Raises:
        BatchRefused: 403 (role or store), 409 (key reused for another body), 422 (row problems).
    """
    if user.role not in ("admin", "manager"):
        raise BatchRefused(403, "Only admins and managers add purchases (as with imports).")
    only_store_id = None if user.role == "admin" else user.store_id
    if user.role != "admin" and only_store_id is None:
        raise BatchRefused(403, "Your user has no store, so it cannot add purchases.")
    earlier = replay(token.id, key, digest)
    if earlier is not None:
        return earlier
    if store_name:
        store = find_store(store_name)
        if store is None:
            raise BatchRefused(
                422,
                f"Unknown store {store_name!r}.",
                [{"row": None, "column": "store", "value": store_name, "reason": "unknown store"}],
            )
    else:
        store = db.session.get(Store, only_store_id) if only_store_id else default_store()
    ctx = _context(store, only_store_id)
    region = store.phone_region or "US"
    mapping = Mapping(MAPPING, kind="transactions", layout="generic")
    clean, errors = validate_chunk(_text_frame(lines, None), mapping, "transactions", default_region=region)
    frames, extra = staging.prepare(clean, ctx)
    problems = _problems([errors, *extra], "error")
    if problems:
        raise BatchRefused(
            422,
            f"{len({p['row'] for p in problems}):,} of {len(lines):,} lines have problems, so none was written.",
            problems,
        )
    warnings = _problems([errors, *extra], "warning")
    now = datetime.now(timezone.utc)
    with db.engine.connect() as conn:
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
                import_id = conn.execute(
                    insert(ImportRun.__table__)
                    .values(
                        kind="transactions",
                        filename=f"API batch ({token.name})"[:255],
                        store_id=store.id,
                        user_email=user.email,
                        source="api",
                        status="running",
                        layout="api",
                        mapping=dict(MAPPING),
                        options={"only_store_id": only_store_id, "idempotency_key": key, "api_token": token.id},
                        created_at=now,
                    )
                    .returning(ImportRun.__table__.c.id)
                ).scalar_one()
                staging.create_tables(conn, "transactions")
                for table, frame in frames.items():
                    staging.load(conn, table, frame)
                staging.stage_problems(conn, ctx, [f[f["level"] == "warning"] for f in (errors, *extra) if len(f)])
                staging.index_tables(conn, "transactions")
                merge.record_stores(conn, "transactions", import_id, only_store_id)
                merged = merge.transactions(conn, import_id, now, len(lines), only_store_id, MAPPING)
                merge.problems(conn, import_id)
                body = {
                    "accepted": len(lines),
                    "new": merged.new,
                    "duplicates": merged.present,
                    "customers_new": merged.customers_new,
                    "import_id": import_id,
                    "warnings": warnings,
                    "rescore": None,
                }
                conn.execute(
                    update(ImportRun.__table__)
                    .where(ImportRun.__table__.c.id == import_id)
                    .values(
                        status="done",
                        total_rows=len(lines),
                        valid_rows=len(lines),
                        rejected_rows=0,
                        new_rows=merged.new,
                        duplicate_rows=merged.present,
                        anonymous_rows=int(frames["_stage_lines"]["customer_ext"].isna().sum()),
                        finished_at=now,
                    )
                )
                conn.execute(
                    insert(AuditEntry.__table__).values(
                        action="import.run",
                        target=f"import #{import_id}",
                        user_email=user.email,
                        at=now,
                        detail={"kind": "transactions", "file": "api", "new": merged.new, "present": merged.present},
                    )
                )
                conn.execute(
                    insert(ApiIdempotencyKey.__table__).values(
                        token_id=token.id, key=key, request_hash=digest, status=200, response=body, created_at=now
                    )
                )
                staging.drop_tables(conn, "transactions")
        except IntegrityError:
            # The same key committed by a concurrent request first: answer as a replay of it.
            db.session.rollback()
            earlier = replay(token.id, key, digest)
            if earlier is not None:
                return earlier
            raise
    from portal.services.campaigns import redemption  # coupon codes on the new lines redeem their offers

    redemption.redeem_from_imports(import_id, user.email)
    campaign_summaries.purchases_changed(*campaign_summaries.import_span(import_id))
    ext_ids = sorted({str(x) for x in frames["_stage_lines"]["customer_ext"].dropna()})
    customer_ids = []
    for start in range(0, len(ext_ids), 900):
        customer_ids += list(
            db.session.scalars(select(Customer.id).where(Customer.external_id.in_(ext_ids[start : start + 900])))
        )
    return BatchResult(200, body, customer_ids=customer_ids)


def record_answer(token_id: int, key: str, body: dict) -> None:
    """Store the final answer (with the rescore's outcome) under the key, so a replay returns it; commits."""
    db.session.execute(
        update(ApiIdempotencyKey)
        .where(ApiIdempotencyKey.token_id == token_id, ApiIdempotencyKey.key == key)
        .values(response=body)
    )
    db.session.commit()
