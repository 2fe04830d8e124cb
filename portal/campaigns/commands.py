"""``flask campaign create|send|cancel|resume`` — the same services as the campaign pages."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import click
from flask import current_app
from flask.cli import with_appcontext

from portal.cli import refuse
from portal.extensions import db
from portal.job_processes import lower_priority


@click.group("campaign")
def campaign_group():
    """Create and send SMS campaigns."""


@campaign_group.command("create")
@click.argument("name")
@click.option("--filter", "filter_", default="", help="Audience as list filters, e.g. 'band=High&tier=Gold'.")
@click.option(
    "--template",
    required=True,
    help="Message text; placeholders {first_name} {tier} {reward} {code} {store} {expires}.",
)
@click.option("--control", type=float, default=None, help="Control-group share (default: the setting, 0.1).")
@click.option(
    "--expires", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Offer expiry date (default: in 30 days)."
)
@with_appcontext
def create_command(name, filter_, template, control, expires):
    """Create a campaign and fix its audience; prints only the new campaign's id."""
    from portal.services.campaigns import campaigns

    expires_at = expires.replace(hour=23, minute=59, tzinfo=timezone.utc) if expires else None
    try:
        campaign = campaigns.create_campaign(
            name, filter_, template, control_share=control, user_email="cli", expires_at=expires_at
        )
    except campaigns.CampaignError as exc:
        refuse(str(exc))
    click.echo(campaign.id)


@campaign_group.command("send")
@click.argument("campaign_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def send_command(campaign_id, yes):
    """Send a campaign (or resume one); asks for confirmation unless --yes."""
    from portal import jobs, sms
    from portal.models import Campaign
    from portal.services.campaigns import campaigns, outbox, resuming

    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        refuse(f"No campaign {campaign_id}.")
    counts = campaigns.status_counts(campaign_id)
    left = sum(counts.get(s, 0) for s in outbox.IN_PROGRESS)
    gateway = sms.gateway_from_config(current_app.config)
    mode = "DRY RUN (nothing leaves this machine): " if isinstance(gateway, sms.DryRunGateway) else ""
    if not yes:
        question = (
            f"{mode}send campaign {campaign_id} “{campaign.name}”: {left} messages "
            f"({counts.get('control', 0)} held out as control)?"
        )
        try:
            confirmed = click.confirm(question, default=False, err=True)
        except click.Abort:
            confirmed = False
        if not confirmed:
            refuse("not confirmed: nothing was sent (use --yes to send without asking)")
    lower_priority(current_app)  # batch work: the web pages on this machine come first
    try:
        job = resuming.start_send(campaign_id, user_email="cli")
    except campaigns.CampaignError as exc:
        refuse(str(exc))
    if current_app.config.get("REDIS_URL") and not current_app.config.get("JOBS_INLINE"):
        click.echo(f"campaign {campaign_id}: queued as job {job.id}; a `flask worker` sends it")
        return
    while True:  # the in-process runner: wait for it, then report
        db.session.expire_all()
        current = jobs.get(job.id)
        if current.status in ("done", "failed"):
            break
        time.sleep(0.5)
    if current.status == "failed":
        refuse(f"campaign {campaign_id}: {current.message}")
    click.echo(f"campaign {campaign_id}: {mode}{current.message}")


@campaign_group.command("cancel")
@click.argument("campaign_id", type=int)
@with_appcontext
def cancel_command(campaign_id):
    """Cancel a campaign: messages not yet sent stay unsent."""
    from portal.services.campaigns import campaigns

    try:
        n = campaigns.cancel_campaign(campaign_id, user_email="cli")
    except campaigns.CampaignError as exc:
        refuse(str(exc))
    click.echo(f"campaign {campaign_id}: cancelled, {n} messages will not be sent")


@campaign_group.command("resume")
@with_appcontext
def resume_command():
    """Queue campaigns that were waiting (quiet hours, retries) and are due; run it from cron."""
    from portal.services.campaigns import resuming

    ids = resuming.resume_due(datetime.now(timezone.utc))
    click.echo(f"resumed {len(ids)} campaign(s)" + (": " + ", ".join(map(str, ids)) if ids else ""))


commands = [campaign_group]
