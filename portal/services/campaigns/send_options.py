"""The knobs of one sending run (rate, leases, backoff, quiet hours, frequency cap) and where they come from.

Admins set the business ones on /settings (``sms.*``); deployments and tests tune the rest
through ``app.config["SMS_SEND_OPTIONS"]``; a job may carry its own overrides. The sender
(portal/services/sending.py) reads them once per run.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime

from flask import current_app

from portal import sms
from portal.services import settings
from portal.services.clock import utcnow


@dataclass
class SendOptions:
    """Knobs of one sending run. Defaults come from settings; tests shorten the waits.

    Attributes (seconds unless said otherwise):
        rate_per_second: messages per second (per worker).
        lease_seconds: after this, a claimed/sending row of a silent worker is taken over.
        lookup_delay_seconds: wait before asking Twilio whether an in-doubt send exists.
        backoff_base_seconds / backoff_max_seconds: retry backoff for temporary errors (doubling).
        max_attempts: sends per row before a temporary error becomes permanent. A send that never
            reached Twilio (connection refused, DNS failure, connect timeout) is no attempt; that many
            of them in a row mean Twilio is unreachable and the campaign pauses instead.
        outage_pause_seconds: how long a campaign waits when Twilio is unreachable (then resumes
            by itself, like after quiet hours).
        max_wait_seconds: a run that would wait longer (quiet hours, backoff) ends; the campaign
            is 'waiting' with scheduled_for set and a job scheduled to resume it then
            (``schedule_resume``); ``flask campaign resume`` from cron also picks it up.
        now / sleep / monotonic: the clock, the sleeper and the rate limiter's timer (tests
            inject a frozen clock).
    """

    rate_per_second: float = 5.0
    batch_size: int = 50
    lease_seconds: float = 120.0
    lookup_delay_seconds: float = 60.0
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 600.0
    max_attempts: int = 8
    outage_pause_seconds: float = 300.0
    max_wait_seconds: float = 300.0
    quiet_start: str = "21:00"
    quiet_end: str = "08:00"
    frequency_cap_days: int = 7
    now: Callable[[], datetime] = field(default=utcnow, repr=False)
    sleep: Callable[[float], None] = field(default=_time.sleep, repr=False)
    monotonic: Callable[[], float] = field(default=_time.monotonic, repr=False)


TUNABLE = {f.name for f in fields(SendOptions)} - {"now", "sleep", "monotonic"}


def options_from_settings(overrides: Mapping | None = None) -> SendOptions:
    """SendOptions from the sms.* settings, then app.config SMS_SEND_OPTIONS, then ``overrides``."""
    values = settings.all_values()
    opts = SendOptions(
        rate_per_second=float(values["sms.rate_per_second"]),
        quiet_start=values["sms.quiet_start"],
        quiet_end=values["sms.quiet_end"],
        frequency_cap_days=int(values["sms.frequency_cap_days"]),
    )
    for source in (current_app.config.get("SMS_SEND_OPTIONS") or {}, overrides or {}):
        opts = replace(opts, **{k: v for k, v in source.items() if k in TUNABLE})
    return opts


def is_dry_run() -> bool:
    """True when this installation sends nothing (no Twilio credentials): messages go to the dry-run outbox."""
    return isinstance(sms.gateway_from_config(current_app.config), sms.DryRunGateway)
