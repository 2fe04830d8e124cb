"""The texts of a campaign: template placeholders, the exact SMS body of each recipient, coupon codes.

Staff write a template with ``{name}`` placeholders; every recipient's body is rendered once,
when the campaign is created (portal/services/campaigns.py stores it on the outbox row), with
the sender named, the opt-out line added and a unique unguessable coupon code. The builder's
preview renders through the same :func:`body_writer`, so what staff see is what goes out.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from portal.extensions import db
from portal.models import Store
from portal.services import settings
from portal.services.clock import aware, zone

PLACEHOLDERS = ("first_name", "tier", "reward", "code", "store", "expires")
OPT_OUT_LINE = "Reply STOP to opt out"
#: Coupon alphabet without look-alikes (0/O, 1/I/L) or U: codes are read aloud and typed at tills.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10  # 30**10 ≈ 2**49: unguessable, and collisions across campaigns are negligible
DEFAULT_EXPIRY_DAYS = 30
_PLACEHOLDER = re.compile(r"{([^{}]*)}")


class CampaignError(ValueError):
    """A campaign that cannot be created or changed; the message is for the user.

    Defined here, the lowest of the campaign modules (a bad template is its first cause), and
    re-exported by portal/services/campaigns.py, where callers import it from.
    """


def validate_template(template: str) -> None:
    """Refuse an empty template or an unknown placeholder (the message names the allowed ones)."""
    if not template or not template.strip():
        raise CampaignError("The message template is empty.")
    unknown = sorted({m for m in _PLACEHOLDER.findall(template) if m not in PLACEHOLDERS})
    if unknown:
        raise CampaignError(
            "Unknown placeholder "
            + ", ".join("{%s}" % u for u in unknown)
            + "; allowed: "
            + ", ".join("{%s}" % p for p in PLACEHOLDERS)
            + "."
        )


def compile_template(template: str) -> str:
    """The template as a ``%``-format string with named fields (fast per recipient, no attribute access)."""
    parts, pos = [], 0
    for match in _PLACEHOLDER.finditer(template):
        if match.group(1) in PLACEHOLDERS:
            parts.append(template[pos : match.start()].replace("%", "%%") + f"%({match.group(1)})s")
            pos = match.end()
    parts.append(template[pos:].replace("%", "%%"))
    return "".join(parts)


class _Compiled(str):
    """A template already passed through compile_template()."""


def render_body(template: str, values: Mapping[str, str], sender: str) -> str:
    """The exact SMS text: placeholders filled, the sender named, the opt-out line at the end.

    Only ``{name}`` placeholders are replaced (never str.format: a template must not reach
    attributes). The sender is prefixed unless the text already names it; "Reply STOP to opt
    out" is appended unless the text already says how to stop.
    """
    fmt = template if isinstance(template, _Compiled) else compile_template(template)
    text = (fmt % values).strip()
    lowered = text.lower()
    if sender and sender.lower() not in lowered:
        text = f"{sender}: {text}"
    if "reply stop" not in lowered:
        if text and text[-1] not in ".!?":
            text += "."
        text = f"{text} {OPT_OUT_LINE}"
    return text


_KEEP = 256 - 256 % len(CODE_ALPHABET)  # bytes below this map to the alphabet without bias
_CODE_TABLE = bytes(ord(CODE_ALPHABET[b % len(CODE_ALPHABET)]) if b < _KEEP else 0 for b in range(256))
_CODE_DROP = bytes(range(_KEEP, 256))


def new_codes(n: int, taken: Iterable[str] = ()) -> list[str]:
    """``n`` distinct unguessable coupon codes (secrets), none of them in ``taken``.

    Draws random bytes in bulk from ``secrets`` and maps them onto the alphabet by rejection
    sampling (bytes ≥ 240 are dropped, so every character is equally likely).
    """
    seen = set(taken)
    codes: list[str] = []
    while len(codes) < n:
        need = (n - len(codes)) * CODE_LENGTH
        chars = secrets.token_bytes(need + need // 8 + 16).translate(_CODE_TABLE, _CODE_DROP).decode("ascii")
        for i in range(0, len(chars) - CODE_LENGTH + 1, CODE_LENGTH):
            code = chars[i : i + CODE_LENGTH]
            if code not in seen:
                seen.add(code)
                codes.append(code)
                if len(codes) == n:
                    break
    return codes


def _store_texts(
    eligible: Iterable[dict], stores: dict[int, Store], default_store: Store | None, expires_at: datetime
) -> dict[int | None, tuple[str, str, str]]:
    """Store id -> (sender name, store name, offer expiry as the store's local date, e.g. "Mar 31")."""
    per_store: dict[int | None, tuple[str, str, str]] = {}
    for sid in {p["store_id"] for p in eligible}:
        store = stores.get(sid) or default_store
        local = expires_at.astimezone(zone(store.timezone if store else "UTC"))
        per_store[sid] = (
            (store.sender_name or store.name) if store else "",
            store.name if store else "",
            f"{local:%b} {local.day}",
        )
    return per_store


def _values(person: dict, code: str, store_name: str, expires: str, rewards: Mapping[str, str]) -> dict:
    """The placeholder values of one recipient (the same for the outbox and the builder's preview)."""
    tier = person["tier"] or ""
    return {
        "first_name": person["first_name"] or "there",
        "tier": tier,
        "reward": rewards.get(tier, ""),
        "code": code,
        "store": store_name,
        "expires": expires,
    }


def body_writer(
    template: str,
    people: Iterable[dict],
    stores: dict[int, Store],
    default_store: Store | None,
    expires_at: datetime,
    rewards: Mapping[str, str],
) -> Callable[[dict, str], str]:
    """A function (person, coupon code) -> that person's exact SMS body, for build_audience's dicts.

    The template is compiled and each store's sender, name and local expiry date worked out
    once, so a 100k-recipient outbox renders each body with one ``%`` format. ``people`` must
    include every store the function will be asked about.
    """
    fmt = _Compiled(compile_template(template))
    per_store = _store_texts(people, stores, default_store, expires_at)

    def body(person: dict, code: str) -> str:
        sender, store_name, expires = per_store[person["store_id"]]
        return render_body(fmt, _values(person, code, store_name, expires, rewards), sender)

    return body


def preview_bodies(
    template: str,
    people: list[dict],
    expires_at: datetime | None = None,
    store_id: int | None = None,
    now: datetime | None = None,
) -> list[dict]:
    """The exact texts ``people`` (build_audience's eligible dicts) would get, with example codes.

    Renders with the same values and render_body as create_campaign, so the builder's preview
    is what goes out except for the coupon code, which is drawn fresh (same length and alphabet).
    Returns one dict per person: customer_id, first_name, phone, body.
    """
    validate_template(template)
    now = now or datetime.now(timezone.utc)
    expires_at = aware(expires_at) or now + timedelta(days=DEFAULT_EXPIRY_DAYS)
    stores = {s.id: s for s in db.session.scalars(select(Store))}
    rewards = {t: settings.get(f"reward.{t}") for t in settings.TIERS}
    body = body_writer(template, people, stores, stores.get(store_id), expires_at, rewards)
    return [
        {
            "customer_id": person["customer_id"],
            "first_name": person["first_name"],
            "phone": person["phone"],
            "body": body(person, code),
        }
        for person, code in zip(people, new_codes(len(people)))
    ]
