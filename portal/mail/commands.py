"""``flask mail send-due``: what the hourly mail jobs do, in the foreground (for cron)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from portal.services.mail import clock


@click.group("mail")
def mail_group():
    """E-mail alerts and digests."""


@mail_group.command("send-due")
@with_appcontext
def send_due_command():
    """Record new events, build the alerts and digests due now, and send every pending mail once."""
    summary = clock.send_due()
    sent = ", ".join(f"{n} {status}" for status, n in sorted(summary["sent"].items())) or "nothing to send"
    click.echo(
        f"{summary['events']} new events; {summary['alerts']} alerts and {summary['digests']} digests queued; {sent}"
    )


commands = [mail_group]
