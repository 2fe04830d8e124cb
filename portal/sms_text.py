"""What an SMS text means or costs, without asking Twilio: reply keywords and segment counting.

Inbound replies are matched against Twilio's default Advanced Opt-Out keywords (STOP, START,
HELP and their synonyms), so the portal records the same opt-outs Twilio enforces. Segment
counting follows GSM 03.38 / UCS-2 as Twilio bills it (the builder's counter, the confirm
step's cost). Pure functions of the text: no ``twilio`` import here, portal/sms.py stays the
only door to Twilio and re-exports these names.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Literal

# Twilio's default Advanced Opt-Out keywords (single-word replies, any case).
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

Reply = Literal["opt_out", "opt_in", "help"]


def classify_reply(body: str | None) -> Reply | None:
    """Which keyword an inbound SMS is, if it is exactly one keyword ("Stop!", " stop ")."""
    if not body:
        return None
    word = body.strip()

    # Trim surrounding whitespace and punctuation (any Unicode punctuation, e.g. "¡" or "。").
    def trimmable(ch: str) -> bool:
        return ch.isspace() or unicodedata.category(ch).startswith("P")

    start, end = 0, len(word)
    while start < end and trimmable(word[start]):
        start += 1
    while end > start and trimmable(word[end - 1]):
        end -= 1
    word = word[start:end].upper()
    if word in OPT_OUT_WORDS:
        return "opt_out"
    if word in OPT_IN_WORDS:
        return "opt_in"
    if word in HELP_WORDS:
        return "help"
    return None


# --- segments ------------------------------------------------------------------------------

# GSM 03.38 default alphabet (3GPP TS 23.038), without the escape character itself.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: Extension table: each costs two septets (ESC + the character).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153  # septets; a part loses 7 to the concatenation header
UCS2_SINGLE, UCS2_PART = 70, 67  # UTF-16 code units


@dataclass(frozen=True)
class SegmentInfo:
    """How a text travels as SMS and what it costs in segments.

    ``characters`` is in the encoding's units: GSM-7 septets (extension characters count 2)
    or UCS-2 UTF-16 code units (an emoji outside the BMP counts 2). ``per_segment_limit`` is
    160/70 for a single message and 153/67 per part of a longer one. ``remaining`` is how many
    units still fit in the last segment. ``ucs2_chars`` lists (once each, in order) the
    characters that forced UCS-2; empty for GSM-7.
    """

    encoding: Literal["GSM-7", "UCS-2"]
    characters: int
    segments: int
    per_segment_limit: int
    remaining: int
    ucs2_chars: list[str] = field(default_factory=list)


def _unit_cost(ch: str, gsm: bool) -> int:
    if gsm:
        return 2 if ch in GSM7_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def segment_info(text: str) -> SegmentInfo:
    """Encoding, length, segment count and UCS-2 culprits of an SMS body, as Twilio bills it.

    Multipart splitting never cuts an extension character's ESC pair or an emoji's surrogate
    pair across two parts (what handsets and Twilio do), so a part may hold 152 septets / 66
    units, and a long text with such characters can need one segment more than
    ceil(characters / 153). An empty text is 0 segments.
    """
    ucs2_chars = list(dict.fromkeys(ch for ch in text if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION))
    gsm = not ucs2_chars
    single, part = (GSM7_SINGLE, GSM7_PART) if gsm else (UCS2_SINGLE, UCS2_PART)
    costs = [_unit_cost(ch, gsm) for ch in text]
    total = sum(costs)
    if total == 0:
        return SegmentInfo("GSM-7" if gsm else "UCS-2", 0, 0, single, single, ucs2_chars)
    if total <= single:
        return SegmentInfo("GSM-7" if gsm else "UCS-2", total, 1, single, single - total, ucs2_chars)
    segments, used = 1, 0
    for cost in costs:  # per character of one message body (≤ a few KB), not per data row
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return SegmentInfo("GSM-7" if gsm else "UCS-2", total, segments, part, part - used, ucs2_chars)
