"""Campaigns: fix the audience (outbox rows, control group, exclusions, coupon codes) and report results.

Creating a campaign decides, once and in one transaction, who gets a message: an outbox row per
recipient (unique per campaign and customer), a seeded random control group that is never
messaged, and a count of everyone excluded with the reason. Sending (portal/services/sending.py)
only ever works from those rows, so what staff confirmed is exactly what goes out.
"""
from __future__ import annotations

import random
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import Campaign, Customer, OutboxMessage, Store
from portal.services import audit, settings
from portal.services.customers import filtered_customers
from portal.params import parse_id

PLACEHOLDERS = ("first_name", "tier", "reward", "code", "store", "expires")
OPT_OUT_LINE = "Reply STOP to opt out"
#: Exclusion reasons in the order they are applied (a customer counts once, under the first).
EXCLUSIONS = {
    "opted_out": "Opted out",
    "no_opt_in": "No recorded opt-in",
    "no_valid_phone": "No valid mobile number",
    "landline": "Landline",
    "frequency_cap": "Messaged within the frequency cap",
}
#: Coupon alphabet without look-alikes (0/O, 1/I/L) or U: codes are read aloud and typed at tills.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10  # 30**10 ≈ 2**49: unguessable, and collisions across campaigns are negligible
DEFAULT_EXPIRY_DAYS = 30
_PLACEHOLDER = re.compile(r"{([^{}]*)}")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class CampaignError(ValueError):
    """A campaign that cannot be created or changed; the message is for the user."""


# --- phone numbers -----------------------------------------------------------------------------

_SPECIAL_TYPES = (("premium_rate", PhoneNumberType.PREMIUM_RATE), ("toll_free", PhoneNumberType.TOLL_FREE),
                  ("shared_cost", PhoneNumberType.SHARED_COST), ("voip", PhoneNumberType.VOIP),
                  ("personal_number", PhoneNumberType.PERSONAL_NUMBER), ("pager", PhoneNumberType.PAGER),
                  ("uan", PhoneNumberType.UAN), ("voicemail", PhoneNumberType.VOICEMAIL))
_plans: dict[int, tuple] = {}


def _desc(desc):
    """(possible lengths, compiled pattern) of a PhoneNumberDesc; None when it matches nothing."""
    if desc is None or not desc.national_number_pattern:
        return None
    return frozenset(desc.possible_length or ()), re.compile(desc.national_number_pattern)


def _matches(national: str, desc) -> bool:
    """phonenumbers' _is_number_matching_desc on a precompiled (lengths, pattern) pair."""
    if desc is None:
        return False
    lengths, pattern = desc
    if lengths and len(national) not in lengths:
        return False
    return pattern.fullmatch(national) is not None


def _plan(md) -> tuple:
    plan = _plans.get(id(md))
    if plan is None:
        special = tuple((d, kind) for name, kind in _SPECIAL_TYPES if (d := _desc(getattr(md, name))) is not None)
        plan = _plans[id(md)] = (_desc(md.general_desc), special, _desc(md.fixed_line), _desc(md.mobile),
                                 bool(md.same_mobile_and_fixed_line_pattern), md)
    return plan


def _type_for(national: str, md) -> int:
    """phonenumbers' _number_type_helper: the same checks in the same order, precompiled.

    (The library's own helper costs ~60 µs a number, too slow for a 100k-recipient outbox.)
    """
    general, special, fixed, mobile, same, _ = _plan(md)
    if not _matches(national, general):
        return PhoneNumberType.UNKNOWN
    for desc, kind in special:
        if _matches(national, desc):
            return kind
    if _matches(national, fixed):
        if same or _matches(national, mobile):
            return PhoneNumberType.FIXED_LINE_OR_MOBILE
        return PhoneNumberType.FIXED_LINE
    if not same and _matches(national, mobile):
        return PhoneNumberType.MOBILE
    return PhoneNumberType.UNKNOWN


def _slow_phone_type(phone: str, region: str) -> tuple[str | None, int]:
    """The library's own answer (non-E.164 input, or E.164 with a trunk prefix it tolerates)."""
    try:
        parsed = phonenumbers.parse(phone, region or "US")
    except phonenumbers.NumberParseException:
        return None, PhoneNumberType.UNKNOWN
    if not phonenumbers.is_valid_number(parsed):
        return None, PhoneNumberType.UNKNOWN
    return (phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
            phonenumbers.number_type(parsed))


def phone_type(phone: str | None, region: str = "US") -> tuple[str | None, int]:
    """(E.164 number, phonenumbers.PhoneNumberType) of a stored phone; (None, UNKNOWN) when invalid.

    E.164 input (what the importer stores) takes a fast path that gives the same answer as
    ``phonenumbers`` (tests compare them on random numbers); anything else, or an E.164 string
    the fast path rejects, is left to phonenumbers with the store's region.
    """
    if not phone:
        return None, PhoneNumberType.UNKNOWN
    phone = phone.strip()
    if _E164.match(phone):
        found = _fast_e164(phone)
        if found[0] is not None:
            return found
    return _slow_phone_type(phone, region)


_CC_CACHE: dict[str, tuple] = {}


def _calling_code(digits: str) -> tuple:
    """(length of the country calling code, [(region, metadata)]) for the digits after '+'."""
    key = digits[:3]
    found = _CC_CACHE.get(key)
    if found is None:
        found = (0, ())
        for size in (1, 2, 3):  # country calling codes are prefix-free
            regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(digits[:size]))
            if regions:
                metas = tuple((r, PhoneMetadata.metadata_for_nongeo_region(int(digits[:size]), None) if r == "001"
                               else PhoneMetadata.metadata_for_region(r, None)) for r in regions)
                found = (size, tuple((r, md) for r, md in metas if md is not None))
                break
        _CC_CACHE[key] = found
    return found


def _fast_e164(phone: str) -> tuple[str | None, int]:
    digits = phone[1:]
    size, regions = _calling_code(digits)
    if not size:
        return None, PhoneNumberType.UNKNOWN
    national = digits[size:]
    for region_code, md in regions:  # phonenumbers' _region_code_for_number_from_list
        if md.leading_digits is not None and region_code != "001":
            if not re.match(md.leading_digits, national):
                continue
        kind = _type_for(national, md)
        if kind != PhoneNumberType.UNKNOWN or md.leading_digits is not None or region_code == "001":
            return (phone, kind) if kind != PhoneNumberType.UNKNOWN else (None, kind)
    return None, PhoneNumberType.UNKNOWN


# --- templates and codes ---------------------------------------------------------------------

def validate_template(template: str) -> None:
    """Refuse an empty template or an unknown placeholder (the message names the allowed ones)."""
    if not template or not template.strip():
        raise CampaignError("The message template is empty.")
    unknown = sorted({m for m in _PLACEHOLDER.findall(template) if m not in PLACEHOLDERS})
    if unknown:
        raise CampaignError("Unknown placeholder " + ", ".join("{%s}" % u for u in unknown) + "; allowed: "
                            + ", ".join("{%s}" % p for p in PLACEHOLDERS) + ".")


def compile_template(template: str) -> str:
    """The template as a ``%``-format string with named fields (fast per recipient, no attribute access)."""
    parts, pos = [], 0
    for match in _PLACEHOLDER.finditer(template):
        if match.group(1) in PLACEHOLDERS:
            parts.append(template[pos:match.start()].replace("%", "%%") + f"%({match.group(1)})s")
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
            code = chars[i:i + CODE_LENGTH]
            if code not in seen:
                seen.add(code)
                codes.append(code)
                if len(codes) == n:
                    break
    return codes


# --- audience --------------------------------------------------------------------------------

def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)  # SQLite hands back naive UTC
    return value


@dataclass
class Audience:
    """Who a filter reaches: the customers who can be messaged and everyone excluded, by reason."""

    total: int
    eligible: list[dict]
    exclusions: dict[str, int] = field(default_factory=dict)

    @property
    def excluded(self) -> int:
        return sum(self.exclusions.values())


def build_audience(params: Mapping[str, str], user=None, now: datetime | None = None,
                   cap_days: int | None = None, stores: dict[int, Store] | None = None,
                   limit: int | None = None) -> Audience:
    """Apply the consent, phone and frequency rules to a customer filter (DESIGN.md: SMS consent).

    Args:
        params: list filters, as on the customers page (``band=High&tier=Gold``).
        user: the logged-in user (store scoping); None for the CLI.
        now: the clock (tests freeze it). cap_days: frequency cap (default: the setting).
        limit: stop once this many customers are eligible (previews); total and exclusions
            then count only the customers looked at so far.
    Returns:
        Audience with one dict per eligible customer (customer_id, phone, first_name, tier,
        store_id) ordered by customer id, and counts per exclusion reason.
    """
    now = now or datetime.now(timezone.utc)
    cap_days = settings.get("sms.frequency_cap_days") if cap_days is None else cap_days
    cap_cutoff = now - timedelta(days=cap_days) if cap_days else None
    stores = stores if stores is not None else {s.id: s for s in db.session.scalars(select(Store))}
    query = filtered_customers(params, user).with_only_columns(
        Customer.id, Customer.name, Customer.phone, Customer.store_id, Customer.sms_consent,
        Customer.last_sms_at, Customer.tier, maintain_column_froms=True).order_by(Customer.id)
    exclusions = dict.fromkeys(EXCLUSIONS, 0)
    eligible: list[dict] = []
    total = 0
    for cid, name, phone, store_id, consent, last_sms_at, tier in db.session.execute(query):
        total += 1
        if consent == "opted_out":
            exclusions["opted_out"] += 1
            continue
        if consent != "opted_in":
            exclusions["no_opt_in"] += 1
            continue
        store = stores.get(store_id)
        e164, kind = phone_type(phone, store.phone_region if store else "US")
        if e164 is None:
            exclusions["no_valid_phone"] += 1
            continue
        if kind == PhoneNumberType.FIXED_LINE:
            exclusions["landline"] += 1
            continue
        if cap_cutoff is not None and last_sms_at is not None and _aware(last_sms_at) > cap_cutoff:
            exclusions["frequency_cap"] += 1
            continue
        eligible.append({"customer_id": cid, "phone": e164, "first_name": (name or "").split(" ")[0],
                         "tier": tier, "store_id": store_id})
        if limit is not None and len(eligible) >= limit:
            break
    return Audience(total=total, eligible=eligible, exclusions=exclusions)


def _campaign_store_id(params: Mapping[str, str], user) -> int | None:
    if user is not None and getattr(user, "role", None) != "admin" and user.store_id:
        return user.store_id
    store = (params.get("store") or "").strip()
    if not store:
        return None
    found = db.session.scalar(select(Store.id).where(
        (Store.name == store) | (Store.id == (parse_id(store) if parse_id(store) is not None else -1))))
    return found


def create_campaign(name: str, params: Mapping[str, str] | str, template: str,
                    control_share: float | None = None, user=None, user_email: str | None = None,
                    expires_at: datetime | None = None, scheduled_for: datetime | None = None,
                    now: datetime | None = None, seed: int | str | None = None) -> Campaign:
    """Create a campaign and its whole outbox in one transaction; returns the committed Campaign.

    Args:
        params: the audience as list filters (a mapping or a query string).
        control_share: share held out as the control group (default: the sms.control_share setting).
        expires_at: offer expiry for {expires} (default: 30 days from now).
        seed: control-group seed (default: the campaign id), so the split is reproducible.
    Raises:
        CampaignError: bad name/template/share, or nobody in the audience can be messaged.
    """
    from urllib.parse import parse_qsl

    if isinstance(params, str):
        query_string = params.lstrip("?")
        params = dict(parse_qsl(query_string, keep_blank_values=False))
    else:
        from urllib.parse import urlencode

        query_string = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise CampaignError("A campaign needs a name of 1 to 120 characters.")
    validate_template(template)
    share = settings.get("sms.control_share") if control_share is None else float(control_share)
    if not 0 <= share <= 0.9:
        raise CampaignError("The control-group share must be between 0 and 0.9.")
    now = now or datetime.now(timezone.utc)
    expires_at = _aware(expires_at) or now + timedelta(days=DEFAULT_EXPIRY_DAYS)
    stores = {s.id: s for s in db.session.scalars(select(Store))}
    audience = build_audience(params, user, now=now, stores=stores)
    if not audience.eligible:
        reasons = ", ".join(f"{n} {EXCLUSIONS[k].lower()}" for k, n in audience.exclusions.items() if n)
        raise CampaignError(f"Nobody in this audience can be messaged ({audience.total} customers"
                            + (f": {reasons}" if reasons else "") + ").")
    email = user_email or (user.email if user is not None else None) or audit.actor_email() or "cli"
    store_id = _campaign_store_id(params, user)
    rewards = {t: settings.get(f"reward.{t}") for t in settings.TIERS}
    for attempt in range(3):  # a coupon-code collision with an older campaign: draw new codes
        campaign = Campaign(name=name, store_id=store_id, audience=query_string, template=template,
                            control_share=share, status="draft", exclusions=audience.exclusions,
                            created_by=email, created_at=now, expires_at=expires_at,
                            scheduled_for=_aware(scheduled_for))
        db.session.add(campaign)
        db.session.flush()
        rows = _outbox_rows(campaign, audience.eligible, stores, rewards, seed)
        _bulk_insert_outbox(rows)
        if campaign.scheduled_for is not None:
            db.session.execute(update(OutboxMessage).where(OutboxMessage.campaign_id == campaign.id)
                               .values(next_attempt_at=campaign.scheduled_for),
                               execution_options={"synchronize_session": False})
        audit.record("campaign.create", f"campaign:{campaign.id}",
                     {"name": name, "audience": query_string, "recipients": len(rows),
                      "control": sum(r["group"] == "control" for r in rows),
                      "exclusions": audience.exclusions}, email)
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            if attempt == 2:
                raise
            continue
        return campaign
    raise AssertionError("unreachable")


_OUTBOX_COLUMNS = ("campaign_id", "customer_id", "group", "phone", "body", "coupon_code", "status", "attempts")


def _bulk_insert_outbox(rows: list[dict]) -> None:
    """Insert outbox rows with the driver's executemany inside the session's transaction.

    Skips SQLAlchemy's per-row parameter processing (half the time at 100k rows); every value
    is a plain int or str, so nothing needs converting.
    """
    if not rows:
        return
    dialect = db.engine.dialect
    quote = dialect.identifier_preparer.quote
    if dialect.name == "postgresql":
        _copy_outbox(rows, quote)
        return
    mark = (lambda c: f":{c}") if dialect.name == "sqlite" else (lambda c: f"%({c})s")
    sql = (f"INSERT INTO {quote(OutboxMessage.__tablename__)} ({', '.join(quote(c) for c in _OUTBOX_COLUMNS)}) "
           f"VALUES ({', '.join(mark(c) for c in _OUTBOX_COLUMNS)})")
    db.session.connection().exec_driver_sql(sql, rows)


def _copy_outbox(rows: list[dict], quote) -> None:
    """PostgreSQL: COPY the rows on the session's own connection (same transaction; 100k rows took 8 s
    as an executemany and under 2 s as a COPY in bench.sms)."""
    columns = ", ".join(quote(c) for c in _OUTBOX_COLUMNS)
    cursor = db.session.connection().connection.driver_connection.cursor()
    try:
        with cursor.copy(f"COPY {quote(OutboxMessage.__tablename__)} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(tuple(row[c] for c in _OUTBOX_COLUMNS))
    finally:
        cursor.close()


def _outbox_rows(campaign: Campaign, eligible: list[dict], stores: dict[int, Store],
                 rewards: dict[str, str], seed) -> list[dict]:
    """One insert dict per eligible customer: control rows carry no body; others the exact SMS."""
    campaign_id = campaign.id
    rng = random.Random(f"loyalist-control:{campaign_id if seed is None else seed}")
    n_control = round(campaign.control_share * len(eligible))
    control = set(rng.sample(range(len(eligible)), n_control)) if n_control else set()
    codes = iter(new_codes(len(eligible) - n_control))
    fmt = _Compiled(compile_template(campaign.template))
    per_store = _store_texts(eligible, stores, stores.get(campaign.store_id), campaign.expires_at)
    rows = []
    for i, person in enumerate(eligible):
        if i in control:
            rows.append({"campaign_id": campaign_id, "customer_id": person["customer_id"], "group": "control",
                         "phone": person["phone"], "body": None, "coupon_code": None, "status": "control",
                         "attempts": 0})
            continue
        sender, store_name, expires = per_store[person["store_id"]]
        code = next(codes)
        values = _values(person, code, store_name, expires, rewards)
        rows.append({"campaign_id": campaign_id, "customer_id": person["customer_id"], "group": "message",
                     "phone": person["phone"], "body": render_body(fmt, values, sender), "coupon_code": code,
                     "status": "pending", "attempts": 0})
    return rows


def _store_texts(eligible: Iterable[dict], stores: dict[int, Store], default_store: Store | None,
                 expires_at: datetime) -> dict[int | None, tuple[str, str, str]]:
    """Store id -> (sender name, store name, offer expiry as the store's local date, e.g. "Mar 31")."""
    per_store: dict[int | None, tuple[str, str, str]] = {}
    for sid in {p["store_id"] for p in eligible}:
        store = stores.get(sid) or default_store
        local = expires_at.astimezone(_zone(store.timezone if store else "UTC"))
        per_store[sid] = ((store.sender_name or store.name) if store else "", store.name if store else "",
                          f"{local:%b} {local.day}")
    return per_store


def _values(person: dict, code: str, store_name: str, expires: str, rewards: Mapping[str, str]) -> dict:
    """The placeholder values of one recipient (the same for the outbox and the builder's preview)."""
    tier = person["tier"] or ""
    return {"first_name": person["first_name"] or "there", "tier": tier, "reward": rewards.get(tier, ""),
            "code": code, "store": store_name, "expires": expires}


def preview_bodies(template: str, people: list[dict], expires_at: datetime | None = None,
                   store_id: int | None = None, now: datetime | None = None) -> list[dict]:
    """The exact texts ``people`` (build_audience's eligible dicts) would get, with example codes.

    Renders with the same values and render_body as create_campaign, so the builder's preview
    is what goes out except for the coupon code, which is drawn fresh (same length and alphabet).
    Returns one dict per person: customer_id, first_name, phone, body.
    """
    validate_template(template)
    now = now or datetime.now(timezone.utc)
    expires_at = _aware(expires_at) or now + timedelta(days=DEFAULT_EXPIRY_DAYS)
    stores = {s.id: s for s in db.session.scalars(select(Store))}
    rewards = {t: settings.get(f"reward.{t}") for t in settings.TIERS}
    per_store = _store_texts(people, stores, stores.get(store_id), expires_at)
    fmt = _Compiled(compile_template(template))
    out = []
    for person, code in zip(people, new_codes(len(people))):
        sender, store_name, expires = per_store[person["store_id"]]
        out.append({"customer_id": person["customer_id"], "first_name": person["first_name"],
                    "phone": person["phone"],
                    "body": render_body(fmt, _values(person, code, store_name, expires, rewards), sender)})
    return out


def campaign_store_id(params: Mapping[str, str], user) -> int | None:
    """The store a campaign with this audience belongs to (the user's, or the filter's); None: all."""
    return _campaign_store_id(params, user)


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except Exception:
        return ZoneInfo("UTC")


# --- reading -------------------------------------------------------------------------------

def status_counts(campaign_id: int) -> dict[str, int]:
    """Outbox rows per status for one campaign (progress bar and results)."""
    rows = db.session.execute(select(OutboxMessage.status, func.count()).where(
        OutboxMessage.campaign_id == campaign_id).group_by(OutboxMessage.status))
    return {status: n for status, n in rows}


def visible_campaigns(user=None):
    """A select of the campaigns ``user`` may see (the same store scoping as every list)."""
    from portal.security import scope_to_user

    query = select(Campaign)
    return scope_to_user(query, Campaign.store_id, user) if user is not None else query


def cancel_campaign(campaign_id: int, user_email: str | None = None) -> int:
    """Cancel a campaign: rows not yet sent stay unsent. Returns how many rows were cancelled.

    Rows whose send is in doubt are left to the sender, which looks them up (and never resends
    them once the campaign is cancelled).
    """
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"No campaign {campaign_id}.")
    if campaign.status in ("done", "cancelled"):
        raise CampaignError(f"Campaign {campaign_id} is {campaign.status}; there is nothing to cancel.")
    result = db.session.execute(update(OutboxMessage).where(
        OutboxMessage.campaign_id == campaign_id, OutboxMessage.status.in_(("pending", "claimed"))
    ).values(status="cancelled", claimed_by=None, next_attempt_at=None))
    campaign.status = "cancelled"
    campaign.finished_at = datetime.now(timezone.utc)
    audit.record("campaign.cancel", f"campaign:{campaign_id}", {"rows": result.rowcount}, user_email)
    db.session.commit()
    return result.rowcount
