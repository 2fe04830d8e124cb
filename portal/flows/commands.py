"""``flask flows run [--store NAME] [--date YYYY-MM-DD]`` — the automations' daily run, for cron."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import or_, select

from portal.cli import refuse
from portal.extensions import db


@click.group("flows")
def flows_group():
    """Automations: win-back, near the next tier, tier-up, bundle, second purchase, birthday."""


@flows_group.command("run")
@click.option("--store", "store_name", default=None, help="Only this store (name or id); default: every store.")
@click.option(
    "--date",
    "day",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Run the rules as of this store-local day (default: each store's today); e.g. to catch up a missed day.",
)
@with_appcontext
def run_command(store_name, day):
    """Run every enabled flow once; idempotent within each flow's episodes (a second run adds nobody)."""
    from portal import sms
    from portal.models import Store
    from portal.params import parse_id
    from portal.services.flows import runner

    store_id = None
    if store_name:
        store_id = db.session.scalar(
            select(Store.id).where(
                or_(Store.name == store_name, Store.id == (parse_id(store_name) if parse_id(store_name) else -1))
            )
        )
        if store_id is None:
            refuse(f"No store {store_name!r}.")
    gateway = sms.gateway_from_config(current_app.config)
    runs = runner.run_all(day=day.date() if day else None, store_id=store_id, gateway=gateway)
    if not runs:
        click.echo("No automation is switched on.")
        return
    for run in runs:
        click.echo(run.line())
    click.echo(f"{sum(r.entered for r in runs)} customers entered, {sum(r.messages for r in runs)} messages.")


commands = [flows_group]
