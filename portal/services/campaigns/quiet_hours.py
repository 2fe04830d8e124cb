"""Quiet hours: when a store's customers may be messaged, in the store's own wall time.

The window comes from the ``sms.quiet_start`` / ``sms.quiet_end`` settings ("HH:MM", e.g.
21:00 → 08:00 across midnight). The sender holds a store's rows until :func:`window_opens`;
the campaign builder uses the same two functions to say when a campaign would go out.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def is_quiet(local: datetime, quiet_start: str, quiet_end: str) -> bool:
    """True when the local wall time falls in quiet hours (e.g. 21:00 → 08:00, over midnight).

    Equal start and end (e.g. 00:00 and 00:00) mean no quiet hours at all.
    """
    start, end, now = _hhmm(quiet_start), _hhmm(quiet_end), local.time().replace(tzinfo=None)
    if start == end:
        return False
    if start > end:
        return now >= start or now < end
    return start <= now < end


def window_opens(now: datetime, tz: ZoneInfo, quiet_start: str, quiet_end: str) -> datetime:
    """When sending may start in ``tz`` (UTC): ``now`` outside quiet hours, else the end of them."""
    local = now.astimezone(tz)
    if not is_quiet(local, quiet_start, quiet_end):
        return now
    end = _hhmm(quiet_end)
    opens = datetime.combine(local.date(), end, tzinfo=tz)
    if opens <= local:
        opens = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=tz)
    return opens.astimezone(timezone.utc)
