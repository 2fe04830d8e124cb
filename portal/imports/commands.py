"""``flask import KIND FILE`` and ``flask demo``: the same import service as the pages, without prompts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from portal import cli
from portal.extensions import db
from portal.job_processes import lower_priority
from portal.models import ImportRun, Store
from portal.services import importer
from preprocessing.columns import KINDS, SYNONYMS

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
DEMO_STORES = (
    ("Downtown", "America/New_York", "Loyalist Downtown", "Loyalist Downtown, 12 Main St. Call 202-555-0100"),
    ("Harbor", "America/Chicago", "Loyalist Harbor", "Loyalist Harbor, 4 Pier Rd. Call 312-555-0101"),
    ("Uptown", "America/Los_Angeles", "Loyalist Uptown", "Loyalist Uptown, 88 Hill Ave. Call 213-555-0102"),
)
DEMO_FILES = (
    ("stock", "demo_stock.csv"),
    ("customers", "demo_customers.csv"),
    ("transactions", "demo_transactions.csv"),
)


def _parse_maps(kind: str, maps: tuple[str, ...]) -> dict[str, str]:
    overrides = {}
    for item in maps:
        source, sep, target = item.partition("=")
        if not sep or not source.strip():
            raise click.BadParameter(f"{item!r}: use source_column=field", param_hint="--map")
        if target.strip() and target.strip() not in SYNONYMS[kind]:
            raise click.BadParameter(
                f"unknown field {target.strip()!r}; fields for {kind}: " + ", ".join(SYNONYMS[kind]), param_hint="--map"
            )
        overrides[source.strip()] = target.strip()
    return overrides


def _problems_report(run: ImportRun) -> str | None:
    """Write the run's problems as CSV under UPLOAD_DIR (the CLI's 'see report' file)."""
    if not run.rejected_rows and not (run.options or {}).get("problems_total"):
        return None
    folder = current_app.config["UPLOAD_DIR"]
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"import-{run.id}-problems.csv")
    with open(path, "w", encoding="utf-8", newline="") as out:
        for block in importer.problems_csv(run):
            out.write(block)
    return path


def run_file(
    kind: str,
    path: str,
    store: Store | None,
    overrides: dict | None = None,
    all_or_nothing: bool = False,
    as_of=None,
    stale_ok: bool = False,
) -> ImportRun:
    """Import one file now (no background job: the command is the long-running process).

    A stale transactions file (see ``importer.stale_refusal``) is refused unless ``stale_ok``."""
    try:
        run, found = importer.create_run(
            kind,
            os.path.abspath(path),
            os.path.basename(path),
            store=store,
            user_email="cli",
            source="cli",
            overrides=overrides,
            all_or_nothing=all_or_nothing,
            as_of=as_of,
            stale_ok=stale_ok,
        )
    except importer.ImportRefused as exc:
        raise importer.ImportRefused(f"{os.path.basename(path)}: {exc}") from exc
    click.echo(
        f"{os.path.basename(path)}: {found.described} Layout: {found.mapping.layout}; mapping: "
        + ", ".join(f"{h} -> {f}" for f, h in found.mapping.items()),
        err=True,
    )
    check = importer.file_check(run)
    if check and not check.get("error"):
        stores = ", ".join(check["stores"]) or "no known store"
        stored = (
            f"{stores} already holds purchases from {check['store_first']} to {check['store_last']}"
            if check["store_first"]
            else f"nothing stored yet for {stores}"
        )
        click.echo(
            f"{os.path.basename(path)}: purchases {check['first']} to {check['last']}; {stored}; "
            f"{check['customers']:,} customers, {check['new_customers']:,} new",
            err=True,
        )
    return importer.execute(run.id)


@click.command("import")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--store", "store_name", help="Store for rows without a store column (default: the first store).")
@click.option("--map", "maps", multiple=True, metavar="SOURCE=FIELD", help="Correct the detected mapping.")
@click.option("--all-or-nothing", is_flag=True, help="Refuse the whole file if any row is bad.")
@click.option("--as-of", type=click.DateTime(formats=["%Y-%m-%d"]), help="Reference date (stock levels' date).")
@click.option("--stale-ok", is_flag=True, help="Import a transactions file that ends long before the store's data.")
@with_appcontext
def import_command(kind, file, store_name, maps, all_or_nothing, as_of, stale_ok):
    """Import a transactions, stock or customers file (CSV, CSV.GZ or XLSX)."""
    from portal.cli import refuse

    overrides = _parse_maps(kind, maps)
    store = None
    if store_name:
        store = importer.find_store(store_name)
        if store is None:
            names = ", ".join(db.session.scalars(select(Store.name).order_by(Store.name))) or "none yet"
            refuse(f"no store named {store_name!r} (stores: {names})")
    lower_priority(current_app)  # batch work: the web pages on this machine come first
    try:
        run = run_file(kind, file, store, overrides, all_or_nothing, as_of.date() if as_of else None, stale_ok)
    except importer.ImportRefused as exc:
        refuse(str(exc))
    report = _problems_report(run)
    if run.status != "done":
        if report:
            click.echo(f"problems: {report}")
        refuse(importer.summary(run) + (f" (see report: {report})" if report else ""))
    click.echo(importer.summary(run, report))


def _ensure_demo_stores() -> list[str]:
    created = []
    for name, tz, sender, contact in DEMO_STORES:
        if importer.find_store(name) is None:
            db.session.add(
                Store(
                    name=name, timezone=tz, currency="USD", phone_region="US", sender_name=sender, contact_line=contact
                )
            )
            created.append(name)
    db.session.commit()
    return created


def _already_imported(path: Path) -> ImportRun | None:
    """A finished, not undone import of exactly this file (same sha256), so demo runs add nothing twice."""

    digest = importer.file_sha256(str(path))
    runs = db.session.scalars(
        select(ImportRun).where(
            ImportRun.status == "done", ImportRun.undone_at.is_(None), ImportRun.filename == path.name
        )
    ).all()
    return next((r for r in runs if (r.options or {}).get("sha256") == digest), None)


@click.command("demo")
@with_appcontext
def demo_command():
    """Create the schema, the demo stores and their data, then train whatever models exist (idempotent)."""
    if cli.ensure_secret_key():
        click.echo("wrote a new random SECRET_KEY to instance/")
    try:
        cli.upgrade_schema()
    except Exception as exc:
        cli.refuse(f"could not create the schema: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
    line = cli.ensure_first_admin()
    if line:
        click.echo(line)
    created = _ensure_demo_stores()
    click.echo(f"stores: created {', '.join(created)}" if created else "stores: demo stores already present")
    missing = [name for _, name in DEMO_FILES if not (DATA_DIR / name).exists()]
    if missing:
        cli.refuse(
            f"demo files missing in {DATA_DIR}: {', '.join(missing)} (python -m preprocessing.synthetic --out data/)"
        )
    downtown = importer.find_store("Downtown")
    for kind, name in DEMO_FILES:
        path = DATA_DIR / name
        previous = _already_imported(path)
        if previous is not None:
            click.echo(f"{name}: 0 new, already imported as import #{previous.id}")
            continue
        click.echo(f"{name}: importing …")
        started = time.monotonic()
        try:
            run = run_file(kind, str(path), downtown)
        except importer.ImportRefused as exc:
            cli.refuse(f"{name}: {exc}")
        if run.status != "done":
            cli.refuse(f"{name}: {importer.summary(run)}")
        click.echo(f"{name}: {importer.summary(run)} ({time.monotonic() - started:.1f} s)")
    from portal.services.scores import training

    started = time.monotonic()
    result = training.train_all(progress=_echo_step(started))
    for line in result.get("details", []):
        click.echo(f"training: {line}")
    click.echo(f"training: done in {time.monotonic() - started:.1f} s")


def _echo_step(started: float):
    """A progress callback that prints each training step as it starts (``make run`` shows them)."""

    def step(fraction: float, message: str | None = None) -> None:
        if message:
            click.echo(f"training: {message} … ({fraction:.0%}, {time.monotonic() - started:.0f} s)")

    return step


commands = [import_command, demo_command]
