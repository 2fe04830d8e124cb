"""One import from file to database: inspect, record the run, stage and merge in one transaction.

The pages, the CLI and the background job all call these functions. A run moves through
pending (uploaded, mapping not confirmed) -> queued -> running -> done | refused | failed, and a
done run can later be undone.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import secrets
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pandas as pd
from flask import current_app
from sqlalchemy import func, insert, or_, select, update

from portal import jobs
from portal.extensions import db
from portal.models import AuditEntry, ConsentEvent, Customer, ImportRun, Store
from portal.services import webhooks_out
from portal.services.importer import merge, prescan, staging
from portal.services.scores import scoring
from portal.services.summaries import campaigns as campaign_summaries
from portal.services.summaries import customers as customer_summaries
from preprocessing.columns import (
    KINDS,
    SYNONYMS,
    FileFormatError,
    Mapping,
    ValidationState,
    detect_mapping,
    missing_required,
    read_table,
    validate_chunk,
)

JOB = "import.run"

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
UPLOAD_SUFFIXES = {".csv", ".txt", ".tsv", ".xlsx", ".gz"}
NOUNS = {"transactions": "lines", "stock": "stock levels", "customers": "customers"}


class ImportRefused(Exception):
    """An import that cannot go ahead; the message is for the person importing."""


class ImportFailed(ImportRefused):
    """The database failed under the import (out of space, connection lost): the run is failed, nothing kept.

    A refusal to its callers (the CLI prints it, the job shows it) because the message is for the
    person importing and no traceback helps them; the run itself is marked 'failed', not 'refused'.
    """


DISK_FULL = (
    "The database ran out of space while saving this import, so nothing was imported. Free some disk "
    "space on the database server (or ask your administrator to), then import the file again."
)
CONNECTION_LOST = (
    "The connection to the database was lost during the import, so nothing was imported. Check "
    "that the database server is running, then import the file again."
)


@dataclass
class Inspection:
    """What the mapping page shows before anything is written."""

    headers: list[str]
    mapping: Mapping
    described: str
    preview: pd.DataFrame
    missing: list[str]

    @property
    def fields(self) -> list[str]:
        return list(SYNONYMS[self.mapping.kind])


def _now() -> datetime:
    return datetime.now(timezone.utc)


def default_store() -> Store:
    """The store for lines that name none: the first store, or a new 'Main' store when there is none."""
    store = db.session.scalar(select(Store).order_by(Store.id).limit(1))
    if store is None:
        store = Store(name="Main", timezone="UTC")
        db.session.add(store)
        db.session.commit()
    return store


def find_store(name: str) -> Store | None:
    """A store by name (case-insensitive)."""
    return db.session.scalar(select(Store).where(func.lower(Store.name) == name.strip().lower()))


def save_upload(stream, filename: str) -> str:
    """Save an uploaded file under UPLOAD_DIR with a random name; returns its path.

    The file is created 0600 (owner only): uploads hold customers' personal data.
    """
    folder = current_app.config["UPLOAD_DIR"]
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(filename or "")[1].lower()
    path = os.path.join(folder, secrets.token_hex(16) + (suffix if suffix in UPLOAD_SUFFIXES else ".upload"))
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        while block := stream.read(1 << 20):
            out.write(block)
    return path


def check_workbook(path: str) -> None:
    """Refuse an XLSX that expands far beyond its size (a zip bomb) before openpyxl opens it.

    openpyxl loads a workbook's shared strings whole, so a small file expanding to gigabytes could
    exhaust memory. The limit is XLSX_MAX_EXPANDED_MB (default 1024) in total, and no member may
    expand more than 200 times once it is over 50 MB.
    """
    with open(path, "rb") as fh:
        if fh.read(2) != b"PK":
            return
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile:
        return  # read_table says the workbook is damaged
    limit = current_app.config.get("XLSX_MAX_EXPANDED_MB", 1024) * 1024 * 1024
    expanded = sum(m.file_size for m in members)
    bomb = any(m.file_size > 50 * 1024 * 1024 and m.file_size > 200 * max(m.compress_size, 1) for m in members)
    if expanded > limit or bomb:
        raise FileFormatError(
            f"The workbook expands to {expanded / 1048576:,.0f} MB when unpacked, far more than "
            "a sheet of purchase data needs; it is refused. Export the sheet as CSV and upload that."
        )


@contextmanager
def _damaged_gzip():
    """A truncated or corrupt .gz surfaces as zlib.error / BadGzipFile while reading: say so plainly."""
    try:
        yield
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise FileFormatError(
            "The file looks gzip-compressed but is damaged; compress it again or upload the plain CSV."
        ) from exc


def inspect(path: str, filename: str, kind: str, mapping: dict | None = None) -> Inspection:
    """Read the header and the first rows; detect (or re-check) the mapping.

    Raises ImportRefused with a message for the person importing when the file cannot be read as a table.
    """
    if kind not in KINDS:
        raise ImportRefused(f"Unknown kind {kind!r}: choose one of {', '.join(KINDS)}.")
    try:
        check_workbook(path)
        with _damaged_gzip(), _read_table(path, filename, chunksize=1000) as reader:
            detected = detect_mapping(reader.headers, kind)
            if mapping is not None:
                detected = Mapping(
                    {f: h for f, h in mapping.items() if h in reader.headers}, kind=kind, layout=detected.layout
                )
            return Inspection(
                reader.headers, detected, reader.describe(), reader.preview(10), missing_required(detected, kind)
            )
    except ImportRefused:
        raise
    except FileFormatError as exc:
        raise ImportRefused(exc.message) from exc
    except Exception as exc:  # a file the reader chokes on must be a refusal (its upload removed), not a 500
        log.exception("could not inspect %s", filename)
        raise ImportRefused(
            "The file could not be read as a table. Save it again as CSV (UTF-8) or .xlsx and upload it again."
        ) from exc


def missing_fields(mapping: dict, kind: str) -> list[str]:
    """The required fields of ``kind`` that ``mapping`` (field -> header) leaves unmapped."""
    return missing_required(mapping, kind)


def _read_table(path: str, filename: str, chunksize: int):
    """``read_table`` with this installation's limits: IMPORT_MAX_EXPANDED_MB of decompressed data (a gzip
    bomb stops as soon as it passes it) and IMPORT_MAX_ROWS data rows (0: no limit)."""
    config = current_app.config
    return read_table(
        path,
        filename,
        chunksize=chunksize,
        max_expanded_bytes=int(config.get("IMPORT_MAX_EXPANDED_MB", 1024)) * 1024 * 1024 or None,
        max_rows=int(config.get("IMPORT_MAX_ROWS", 5_000_000)) or None,
    )


def create_run(
    kind: str,
    path: str,
    filename: str,
    *,
    store: Store | None,
    user_email: str | None,
    source: str = "web",
    overrides: dict[str, str] | None = None,
    all_or_nothing: bool = False,
    as_of: date | None = None,
    only_store_id: int | None = None,
    stale_ok: bool = False,
) -> tuple[ImportRun, Inspection]:
    """Record a pending run with the detected mapping (corrected by ``overrides``: header -> field).

    A transactions file is scanned first (``prescan``: its dates, stores and new customers against the
    database); ``stale_ok`` is the confirmation that a file ending long before the store's data is meant.
    """
    from preprocessing.columns import apply_overrides

    found = inspect(path, filename, kind)
    if overrides:
        try:
            found.mapping = apply_overrides(found.mapping, found.headers, overrides)
        except ValueError as exc:
            raise ImportRefused(str(exc)) from exc
        found.missing = missing_required(found.mapping, kind)
    store = store or default_store()
    run = ImportRun(
        kind=kind,
        filename=(filename or os.path.basename(path))[:255],
        stored_path=path,
        store_id=store.id,
        user_email=user_email,
        source=source,
        status="pending",
        layout=found.mapping.layout,
        mapping=dict(found.mapping),
        options={
            "all_or_nothing": bool(all_or_nothing),
            "as_of": as_of.isoformat() if as_of else None,
            "only_store_id": only_store_id,
            "read_as": found.described,
            "sha256": file_sha256(path),
            "prescan": _prescan(kind, path, filename, dict(found.mapping), store),
            "stale_ok": bool(stale_ok),
        },
    )
    db.session.add(run)
    db.session.commit()
    return run, found


def _prescan(kind: str, path: str, filename: str, mapping: dict, store: Store) -> dict | None:
    """The file's first look (transactions with a purchase date only); a file that breaks mid-way says so."""
    if kind != "transactions" or not mapping.get("purchase_date"):
        return None
    try:
        with _damaged_gzip():
            return prescan.scan(path, filename, mapping, store, _read_table)
    except FileFormatError as exc:
        return {"error": exc.message, "columns": prescan.columns_of(mapping)}


def file_check(run: ImportRun) -> dict | None:
    """What the mapping page shows about a transactions file before it is imported (``prescan.scan``), or None."""
    return (run.options or {}).get("prescan")


def stale_refusal(run: ImportRun) -> str | None:
    """Why the run may not go ahead without a confirmation (a stale file), or None."""
    found = file_check(run)
    if found and found.get("stale") and not (run.options or {}).get("stale_ok"):
        return prescan.stale_message(found)
    return None


def set_mapping(
    run: ImportRun, mapping: dict[str, str], all_or_nothing: bool | None = None, stale_ok: bool | None = None
) -> list[str]:
    """Store the manager's corrected mapping (field -> header) and, when given, the all-or-nothing choice and
    the stale-file confirmation; a new date, store or customer column scans the file again. Returns the
    required fields still missing."""
    run.mapping = {f: h for f, h in mapping.items() if h}
    options = dict(run.options or {})
    if all_or_nothing is not None:
        options["all_or_nothing"] = bool(all_or_nothing)
    if stale_ok is not None:
        options["stale_ok"] = bool(stale_ok)
    if run.kind == "transactions" and prescan.columns_of(run.mapping) != (options.get("prescan") or {}).get("columns"):
        store = db.session.get(Store, run.store_id)
        options["prescan"] = _prescan(run.kind, run.stored_path, run.filename, run.mapping, store)
    run.options = options
    db.session.commit()
    return missing_required(run.mapping, run.kind)


def start(run: ImportRun):
    """Queue the import as a background job; the run's page shows its progress."""
    run.status = "queued"
    db.session.commit()
    job = jobs.enqueue(JOB, f"Import {run.filename}", run.user_email, scope_store_id=_job_store(run), import_id=run.id)
    run = db.session.get(ImportRun, run.id)
    run.job_id = job.id
    db.session.commit()
    return job


def _job_store(run: ImportRun) -> int | None:
    """The store an import's job is shown to: the one store a store-bound user may write to, the run's store
    when the file names no store, else None (a file that may span stores: chain-wide, admins and its starter)."""
    only = (run.options or {}).get("only_store_id")
    if only is not None:
        return only
    return run.store_id if "store" not in (run.mapping or {}) else None


@jobs.job(JOB)
def run_job(progress, import_id: int) -> dict:
    """Job entry point: run the import; a refusal is a finished job whose message says why."""
    try:
        run = execute(import_id, progress)
    except ImportRefused as exc:
        raise jobs.JobError(str(exc)) from exc
    except Exception as exc:
        raise jobs.JobError("The import failed with an unexpected error (logged); nothing was written.") from exc
    return {"message": summary(run), "import_id": run.id, "status": run.status}


def execute(import_id: int, progress=None) -> ImportRun:
    """Validate, stage and merge one run's file; the whole write is one transaction.

    Returns the finished run (status done or refused). A database fault (out of space, connection
    lost) marks it failed and raises ImportFailed with a plain message; other unexpected errors mark it
    failed and re-raise.
    """
    progress = progress or (lambda fraction, message=None: None)
    run = db.session.get(ImportRun, import_id)
    if run is None:
        raise ImportRefused(f"There is no import #{import_id}.")
    if run.status not in ("pending", "queued", "running"):
        return run
    mapping = Mapping(run.mapping or {}, kind=run.kind, layout=run.layout or "generic")
    missing = missing_required(mapping, run.kind)
    if missing:
        return _finish(
            run,
            "refused",
            "The file is missing required columns: "
            + ", ".join(missing)
            + ". Map them on the mapping page (or with --map source_column=field).",
        )
    stale = stale_refusal(run)
    if stale:
        return _finish(run, "refused", stale)
    ctx = _context(run, mapping)
    region = db.session.get(Store, ctx.store_id).phone_region or "US"
    options = dict(run.options or {})
    run.status = "running"
    db.session.commit()
    try:
        counts, merged, read_as = _stage_and_merge(
            run.id, run.stored_path, run.filename, mapping, ctx, region, options, run.user_email, progress
        )
    except (FileFormatError, ImportRefused) as exc:
        db.session.rollback()
        return _finish(db.session.get(ImportRun, import_id), "refused", getattr(exc, "message", str(exc)))
    except Exception as exc:
        db.session.rollback()
        log.exception("import #%s failed", import_id)
        fault = _database_fault(exc)
        _finish(
            db.session.get(ImportRun, import_id),
            "failed",
            fault or "The import failed with an unexpected error (logged); nothing was written.",
        )
        if fault:
            raise ImportFailed(fault) from exc
        raise
    db.session.expire_all()
    run = db.session.get(ImportRun, import_id)
    if run.status == "done" and run.kind == "transactions":
        from portal.services.campaigns import redemption  # coupon codes on the new lines redeem their offers

        redemption.redeem_from_imports(run.id, run.user_email)
    if run.status == "done" and (merged.new or merged.updated or merged.consent_changes):
        _rescore(run.id)
    campaign_summaries.after_import(import_id)  # campaigns whose window its lines reach, or whose opt-outs moved
    _announce(db.session.get(ImportRun, import_id))  # after the rescore, as the API's batch: scores are current
    progress(1.0, summary(run))
    return run


def _context(run: ImportRun, mapping: Mapping) -> staging.Context:
    stores = db.session.scalars(select(Store).order_by(Store.name)).all()
    store = db.session.get(Store, run.store_id) if run.store_id else default_store()
    return staging.Context(
        kind=run.kind,
        mapping=dict(mapping),
        store_id=store.id,
        store_name=store.name,
        stores={s.name.strip().casefold(): s.id for s in stores},
        store_names=[s.name for s in stores],
        only_store_id=(run.options or {}).get("only_store_id"),
        date_limits={s.id: _latest_purchase_time(s) for s in stores},
    )


def _latest_purchase_time(store: Store) -> datetime:
    """The latest purchase wall time a file may hold for ``store``: its local now plus a day of margin.

    Purchase times are stored as the store's wall clock, so the limit is one too (naive).
    """
    from portal.services.clock import zone

    return (datetime.now(zone(store.timezone)) + timedelta(days=1)).replace(tzinfo=None)


def _stage_and_merge(import_id, path, filename, mapping, ctx, region, options, user_email, progress):
    kind, now = ctx.kind, _now()
    estimate = _estimate_rows(path)
    check_workbook(path)
    with _damaged_gzip(), _read_table(path, filename, CHUNK_ROWS) as reader, db.engine.connect() as conn:
        absent = [f"{f} -> {h!r}" for f, h in mapping.items() if h not in reader.headers]
        if absent:
            raise ImportRefused("The mapping names columns the file does not have: " + ", ".join(absent) + ".")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")  # staged naive dates are UTC
            staging.create_tables(conn, kind)
            state = ValidationState()
            counts = ctx.counts
            for chunk in reader:
                clean, errors = validate_chunk(
                    chunk, mapping, kind, default_region=region, layout=mapping.layout, state=state
                )
                frames, extra = staging.prepare(clean, ctx)
                for table, frame in frames.items():
                    staging.load(conn, table, frame)
                staging.stage_problems(conn, ctx, [errors, *extra])
                rows = frames[staging.TABLES_FOR_KIND[kind][0]]
                counts["total"] += len(chunk)
                counts["valid"] += len(rows)
                if kind == "transactions":
                    counts["anonymous"] += int(rows["customer_ext"].isna().sum())
                done = counts["total"] / estimate if estimate else counts["total"] / (counts["total"] + CHUNK_ROWS)
                progress(0.8 * min(done, 1.0), f"Checked {counts['total']:,} rows ({counts['valid']:,} valid)…")
            # The last progress write before the commit: from here the import reads the real tables, and on
            # SQLite (WAL) another connection's write would make this transaction's snapshot stale.
            progress(0.85, f"Saving {counts['valid']:,} rows…")
            if kind == "customers" and ctx.only_store_id is not None:  # checked here: only the database knows
                refused = merge.refuse_other_stores_customers(conn, ctx.only_store_id, mapping)
                counts["valid"] -= refused
                counts["problems"] += refused
                ctx.listed_problems += refused
            rejected = counts["total"] - counts["valid"]
            merged = merge.Merged()
            if counts["total"] == 0:
                raise ImportRefused("The file has a header row but no data rows.")
            if counts["valid"] == 0:
                status, message = "refused", f"None of the {counts['total']:,} rows can be imported; see the problems."
            elif options.get("all_or_nothing") and rejected:
                status, message = (
                    "refused",
                    (
                        f"{rejected:,} of {counts['total']:,} rows have problems, so nothing was "
                        "imported (all or nothing). Fix them, or import the valid rows."
                    ),
                )
            else:
                status, message = "done", None
                staging.index_tables(conn, kind)
                merge.record_stores(conn, kind, import_id, ctx.only_store_id)  # before the merge moves anyone
                merged = _merge(
                    conn, kind, import_id, now, mapping, options, user_email, counts["valid"], ctx.only_store_id
                )
            merge.problems(conn, import_id)
            options.update(
                updated=merged.updated,
                customers_new=merged.customers_new,
                consent_changes=merged.consent_changes,
                line_checks=merged.line_checks,
                problems_total=counts["problems"],
                problems_listed=ctx.listed_problems,
                read_as=reader.describe(),
            )
            conn.execute(
                update(ImportRun.__table__)
                .where(ImportRun.id == import_id)
                .values(
                    status=status,
                    message=message,
                    total_rows=counts["total"],
                    valid_rows=counts["valid"],
                    rejected_rows=rejected,
                    new_rows=merged.new,
                    duplicate_rows=merged.present,
                    anonymous_rows=counts["anonymous"],
                    options=options,
                    finished_at=_now(),
                )
            )
            if status == "done":
                conn.execute(
                    insert(AuditEntry.__table__).values(
                        action="import.run",
                        target=f"import #{import_id}",
                        user_email=user_email or "cli",
                        detail={
                            "kind": kind,
                            "file": filename,
                            "new": merged.new,
                            "present": merged.present,
                            "rejected": rejected,
                            "consent_changes": merged.consent_changes,
                        },
                    )
                )
            staging.drop_tables(conn, kind)
        return counts, merged, reader.describe()


def _merge(conn, kind, import_id, now, mapping, options, user_email, valid, only_store_id=None) -> merge.Merged:
    if kind == "transactions":
        return merge.transactions(conn, import_id, now, valid, only_store_id, mapping)
    if kind == "stock":
        as_of = date.fromisoformat(options["as_of"]) if options.get("as_of") else now.date()
        return merge.stock(conn, import_id, as_of, "product_id" not in mapping, valid)
    return merge.customers(conn, import_id, now, user_email, mapping, valid, only_store_id)


def _database_fault(exc: BaseException) -> str | None:
    """The manager's message for a database fault behind ``exc`` (or its causes); None for anything else.

    Looks through SQLAlchemy's wrapper (``.orig``) and the exception chain, because staging's COPY
    raises the driver's error unwrapped. Out of space: SQLite's "database or disk is full"
    (SQLITE_FULL) or PostgreSQL's SQLSTATE 53100. Connection lost: an error SQLAlchemy saw as a
    disconnect, PostgreSQL's 57P01-57P03 (server shut down / killed the backend) or class 08, or a
    psycopg OperationalError with no SQLSTATE (the socket closed under it).
    """
    seen: set[int] = set()
    todo = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        todo += [getattr(err, "orig", None), err.__cause__, err.__context__]
        state = getattr(err, "sqlstate", None)
        if state == "53100" or getattr(err, "sqlite_errorcode", None) == 13 or "database or disk is full" in str(err):
            return DISK_FULL
        if getattr(err, "connection_invalidated", False) or (state or "").startswith(("57P0", "08")):
            return CONNECTION_LOST
        if state is None and type(err).__module__.startswith("psycopg") and type(err).__name__ == "OperationalError":
            return CONNECTION_LOST
    return None


def _finish(run: ImportRun, status: str, message: str) -> ImportRun:
    run.status, run.message, run.finished_at = status, message, _now()
    db.session.commit()
    _announce(run)
    return run


def _announce(run: ImportRun) -> None:
    """The outgoing webhook ``import.finished`` for a file import that ended (done, refused or failed), after
    ``customer.opted_out`` for each customer a customers file opted out.

    The same ``data`` as an API batch's (docs/api.md), with the file's own fields; never raises.
    """
    try:
        wanted = webhooks_out.subscribed(["import.finished", "customer.opted_out"])
        if not wanted:
            return
        data = {
            "import_id": run.id,
            "source": "file",
            "kind": run.kind,
            "status": run.status,
            "lines": run.valid_rows or 0,
            "new": run.new_rows or 0,
            "rejected": run.rejected_rows or 0,
            "message": run.message,
        }
        events = _opt_outs(run) if "customer.opted_out" in wanted else []
        if "import.finished" in wanted:
            events.append(("import.finished", data))
    except Exception:  # the run's outcome is committed; a database hiccup here must not change it
        db.session.rollback()
        log.exception("import #%s: webhook event not recorded", run.id)
        return
    webhooks_out.notify(events)


def _opt_outs(run: ImportRun) -> list[tuple[str, dict]]:
    """``customer.opted_out`` for each customer a customers file opted out (its consent events name the run)."""
    if run.kind != "customers" or run.status != "done":
        return []
    rows = db.session.execute(
        select(ConsentEvent.customer_id, Customer.external_id)
        .join(Customer, Customer.id == ConsentEvent.customer_id)
        .where(
            ConsentEvent.source == "import",
            ConsentEvent.status == "opted_out",
            or_(ConsentEvent.detail == f"import #{run.id}", ConsentEvent.detail.like(f"import #{run.id};%")),
        )
        .order_by(ConsentEvent.customer_id)
    )
    return [
        ("customer.opted_out", {"customer_id": cid, "external_id": ext, "source": "import", "import_id": run.id})
        for cid, ext in rows
    ]


def _rescore(import_id: int) -> None:
    """Let scoring refresh the customers this import touched."""
    try:
        scoring.rescore_after_import(import_id)
    except Exception:  # the import is committed; a scoring failure must not make it look failed
        log.exception("re-scoring after import #%s failed", import_id)
        customer_summaries.refresh_after_rescore()  # the rescore did not: the import's new customers still count


def _estimate_rows(path: str) -> int | None:
    """Line count of a (gzipped) CSV for the progress bar; None for workbooks."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic.startswith(b"PK"):
        return None
    opener = gzip.open if magic.startswith(b"\x1f\x8b") else open
    count = read = 0
    cap = int(current_app.config.get("IMPORT_MAX_EXPANDED_MB", 1024)) * 1024 * 1024  # the reader refuses beyond
    try:
        with opener(path, "rb") as fh:
            while read <= cap and (block := fh.read(1 << 22)):
                read += len(block)
                count += block.count(b"\n")
    except (OSError, EOFError):
        return None
    return max(count - 1, 1)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def summary(run: ImportRun, report: str | None = None) -> str:
    """One line saying what the import did, in the words the CLI prints and the page shows."""
    if run.status in ("refused", "failed"):
        return run.message or f"import {run.status}"
    if run.status in ("pending", "queued", "running"):
        return f"import #{run.id} is {run.status}"
    opts = run.options or {}
    noun = NOUNS[run.kind]
    parts = [f"imported {run.new_rows:,} new {noun}"]
    if opts.get("updated"):
        parts.append(f"{opts['updated']:,} updated")
    parts.append(f"{run.duplicate_rows:,} already present")
    rejected = f"{run.rejected_rows:,} rejected"
    if run.rejected_rows and report:
        rejected += f" (see report: {report})"
    parts.append(rejected)
    if run.kind == "transactions":
        parts.append(f"{run.anonymous_rows:,} anonymous")
    if run.kind == "customers":
        parts.append(f"{opts.get('consent_changes', 0):,} consent changes")
    line = ", ".join(parts)
    return line + (" (undone)" if run.undone_at else "")
