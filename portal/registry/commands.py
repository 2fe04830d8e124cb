"""``flask train [all|segmentation|churn|bundles|clv]``: the same training the Models page runs."""

import click
from flask import current_app
from flask.cli import with_appcontext

from portal.cli import refuse
from portal.job_processes import lower_priority
from portal.jobs import JobError
from portal.services.scores import training


@click.command("train")
@click.argument("which", type=click.Choice(["all", *training.MODELS]), default="all")
@with_appcontext
def train_command(which: str):
    """Train a model (default: all) on the stored data and re-score the customers."""
    func = training.train_all if which == "all" else getattr(training, f"train_{which}")
    lower_priority(current_app)  # batch work: the web pages on this machine come first
    try:
        result = func()
    except JobError as exc:
        refuse(str(exc))
    click.echo(result.get("message", f"{which} trained"))


commands = [train_command]
