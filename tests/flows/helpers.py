"""Helpers for the automations tests: a gateway to the fake Twilio and send options on a frozen clock."""

from __future__ import annotations

from portal.services.campaigns.send_options import SendOptions
from portal.sms import TwilioGateway
from tests.sms.fake_twilio import ACCOUNT_SID, AUTH_TOKEN

FROM = "+15005550006"


def gateway(fake) -> TwilioGateway:
    return TwilioGateway(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM, api_base=fake.base_url, timeout=5)


def options(now, **kw) -> SendOptions:
    """Send at once on a frozen clock: no quiet hours, no real waiting."""
    values = dict(
        quiet_start="00:00",
        quiet_end="00:00",
        rate_per_second=1000,
        lease_seconds=30,
        lookup_delay_seconds=0,
        backoff_base_seconds=0.01,
        backoff_max_seconds=0.05,
        max_wait_seconds=5,
        frequency_cap_days=7,
    )
    values.update(kw)
    return SendOptions(now=lambda: now, **values)
