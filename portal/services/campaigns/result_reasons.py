"""Why a campaign's results draw no conclusion yet, in plain words, and when one can come.

The campaign page used to say "too few customers" whenever no conclusion was possible, also when both
groups were large and the real reason was that no sale after the send had been imported. These
sentences name the actual reason with its counts: still sending, no control group, groups too small,
no sales imported since the first message, nobody bought, too few buyers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portal.models import Campaign

if TYPE_CHECKING:
    from portal.services.campaigns.results import Results

MIN_GROUP = 30
MIN_OUTCOMES = 5


def explain(results: Results, local_zone) -> None:
    """Fill ``reason`` (the actual reason there is no conclusion) and ``expected`` (when one can come)."""
    message, control = results.message, results.control
    end = f"{results.window_end.astimezone(local_zone):%Y-%m-%d %H:%M %Z}"
    start = f"{results.window_start.astimezone(local_zone):%Y-%m-%d %H:%M %Z}"
    sending = (
        f"Still sending: {results.left:,} {'message' if results.left == 1 else 'messages'} to go. "
        if results.left
        else ""
    )
    if results.rate_enough:
        results.expected = (
            "" if results.complete else f"These numbers will change until the measurement window ends on {end}."
        )
        return
    if control.n == 0:
        results.reason = sending + "This campaign has no control group, so there is nothing to compare against."
        results.expected = "No comparison can be made for this campaign; give the next one a control group."
        return
    if message.n < MIN_GROUP or control.n < MIN_GROUP:
        results.reason = sending + (
            f"The groups are too small to conclude: {message.n:,} messaged and {control.n:,} in the control group; "
            f"each group needs at least {MIN_GROUP}."
        )
        results.expected = (
            "No reliable result can be expected from this campaign, however long it runs; a larger audience "
            "(or control group) gives one."
        )
        return
    if message.buyers + control.buyers == 0:
        latest = results.latest_purchase
        start_local = results.window_start.astimezone(local_zone).replace(tzinfo=None)
        if latest is None or latest < start_local:
            on_file = f"{latest:%Y-%m-%d}" if latest is not None else "none"
            results.reason = sending + (
                f"Nobody has bought since the first message ({start}) as far as the portal knows: no purchase "
                f"after it has been imported yet (latest purchase on file: {on_file})."
            )
            results.expected = (
                f"Import the sales made since then; purchases until {end} count."
                if not results.complete
                else f"Import the sales up to {end} (the end of the window) to see the result."
            )
            return
        results.reason = sending + (
            f"Nobody in either group has bought since the first message ({start}): "
            f"{message.n:,} messaged and {control.n:,} control customers, no purchase yet."
        )
    else:
        results.reason = sending + (
            f"Not enough purchases yet to compare: {message.buyers:,} of {message.n:,} messaged and "
            f"{control.buyers:,} of {control.n:,} control customers have bought; each group needs at least "
            f"{MIN_OUTCOMES} who bought and {MIN_OUTCOMES} who did not."
        )
    results.expected = (
        f"A result can be expected as purchases come in; the measurement window ends on {end}."
        if not results.complete
        else f"The measurement window ended on {end} without enough purchases to conclude."
    )


def no_results_reason(campaign: Campaign) -> str:
    """Why a campaign has no results at all yet (nothing sent), and what happens next."""
    if campaign.status == "draft":
        return "Not sent yet: results appear once the first message has gone out (review and send the draft)."
    if campaign.status == "cancelled":
        return "Cancelled before any message went out: this campaign has no results."
    if campaign.status == "waiting":
        return "Waiting for its time (a schedule or quiet hours): results appear once the first message has gone out."
    if campaign.status == "stopped":
        return "Stopped before any message went out (see the reason above); nothing to measure yet."
    return "Sending is starting: results appear once the first message has gone out."
