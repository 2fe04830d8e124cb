"""A campaign's sending progress, read from the outbox (so it moves as each message is claimed and sent)."""

from __future__ import annotations

from portal.models import Campaign
from portal.services.campaigns.campaigns import status_counts
from portal.services.campaigns.outbox import FINAL, IN_PROGRESS

#: Campaign states in which the numbers may still move by themselves (the page keeps polling).
MOVING = ("queued", "sending", "waiting")


def campaign_progress(campaign: Campaign, counts: dict[str, int] | None = None) -> dict:
    """Messages finished out of the messaged group, per status, and whether sending is still under way.

    ``counts``: outbox rows per status when the caller has them (the campaign page's stored numbers);
    None counts them from the outbox (the polled progress JSON, live while sending).
    Returns a JSON-ready dict: status, messages, done, left, percent (0–100, whole), counts (per outbox
    status, control included), moving (True while queued, sending or waiting).
    """
    counts = status_counts(campaign.id) if counts is None else counts
    messages = sum(n for s, n in counts.items() if s != "control")
    done = sum(n for s, n in counts.items() if s in FINAL and s != "control")
    left = sum(counts.get(s, 0) for s in IN_PROGRESS)
    return {
        "campaign_id": campaign.id,
        "status": campaign.status,
        "messages": messages,
        "done": done,
        "left": left,
        "percent": int(done * 100 / messages) if messages else 0,
        "counts": dict(sorted(counts.items())),
        "moving": campaign.status in MOVING,
    }
