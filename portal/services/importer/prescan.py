"""What a transactions file will do, shown before anything is written: dates, stores, new customers, staleness.

One pass over the file reads only the purchase date, store and customer columns (``FileScan``), at
most ``SCAN_MAX_ROWS`` rows: past that the figures are those of the file's first rows, and the page
says so. The result is kept in ``ImportRun.options["prescan"]`` (JSON) so the mapping page does not
read the file again on every visit; a changed mapping of those three columns scans again.
"""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Customer, PurchaseLine, Store
from portal.services import settings as settings_service
from portal.services.clock import zone
from preprocessing.columns.scan import FileScan

SCAN_MAX_ROWS = 1_000_000
SCAN_CHUNK_ROWS = 100_000
SCANNED = ("purchase_date", "store", "customer_id")
IN_BATCH = 2_000  # ids per IN (...) query


def columns_of(mapping: dict) -> dict:
    """The part of a mapping the scan depends on."""
    return {f: mapping.get(f) for f in SCANNED if mapping.get(f)}


def scan(path: str, filename: str, mapping: dict, store: Store, open_table) -> dict:
    """Scan a transactions file and compare it with the stores it writes to.

    Args:
        mapping: field -> header (the detected or chosen mapping).
        store: the run's store (for rows that name none).
        open_table: ``(path, filename, chunksize)`` -> a TableReader with this installation's limits.
    Returns:
        JSON-safe dict: rows scanned and whether the cap stopped the scan; the file's first/last purchase;
        the stores it writes to (and names no store matches); the stores' first/last purchase and today;
        customers in the file and how many are new; ``stale`` (the file ends more than ``imports.stale_days``
        before the stores' latest purchase) and ``behind_days``.
    """
    started = time.monotonic()
    found = FileScan()
    region = store.phone_region or "US"
    capped = False
    with open_table(path, filename, SCAN_CHUNK_ROWS) as reader:
        for chunk in reader:
            found.add(chunk.iloc[: SCAN_MAX_ROWS - found.rows], mapping, region)
            if found.rows >= SCAN_MAX_ROWS:
                capped = True
                break
    by_name = {s.name.strip().casefold(): s for s in db.session.scalars(select(Store))}
    targets = {by_name[n.casefold()].id: by_name[n.casefold()].name for n in found.stores if n.casefold() in by_name}
    if found.without_store:
        targets[store.id] = store.name
    unknown = sorted(n for n in found.stores if n.casefold() not in by_name)
    first_db, last_db = (
        db.session.execute(
            select(func.min(PurchaseLine.purchased_at), func.max(PurchaseLine.purchased_at)).where(
                PurchaseLine.store_id.in_(list(targets) or [-1])
            )
        ).one()
        if targets
        else (None, None)
    )
    ids = sorted(found.customers)
    known = 0
    for i in range(0, len(ids), IN_BATCH):
        known += db.session.scalar(
            select(func.count()).select_from(Customer).where(Customer.external_id.in_(ids[i : i + IN_BATCH]))
        )
    stale_days = int(settings_service.get("imports.stale_days"))
    behind = (last_db.date() - found.last.date()).days if last_db is not None and found.last is not None else None
    return {
        "columns": columns_of(mapping),
        "rows": found.rows,
        "capped": capped,
        "first": _iso(found.first),
        "last": _iso(found.last),
        "unreadable_dates": found.unreadable_dates,
        "stores": [targets[k] for k in sorted(targets, key=lambda k: targets[k])],
        "unknown_stores": unknown,
        "store_first": _iso(first_db),
        "store_last": _iso(last_db),
        "today": _today(store).isoformat(),
        "customers": len(ids),
        "new_customers": len(ids) - int(known),
        "stale_days": stale_days,
        "behind_days": behind,
        "stale": behind is not None and behind > stale_days,
        "seconds": round(time.monotonic() - started, 3),
    }


def stale_message(found: dict) -> str:
    """Why a stale file needs a confirmation, in the words the page and the CLI use."""
    return (
        f"This file's purchases end on {found['last']}, {found['behind_days']:,} days before the latest purchase "
        f"already stored for {', '.join(found['stores'])} ({found['store_last']}); the limit is "
        f"{found['stale_days']:,} days (setting imports.stale_days). Importing it would make its customers look "
        "long gone. Confirm that it is the file you mean to import (on the command line: --stale-ok)."
    )


def _iso(value) -> str | None:
    return None if value is None else value.date().isoformat()


def _today(store: Store):
    return datetime.now(zone(store.timezone)).date()
