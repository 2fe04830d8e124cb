"""The builder's read side: who a filter reaches, what they would read, what it costs.

"Exclusions shown = exclusions applied": the counts come from the same
``campaigns.build_audience`` that ``create_campaign`` runs, with the same filters and the same
user scoping, and the control-group size uses the same rounding as the outbox.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, time, timedelta, timezone
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import select

from portal.extensions import db
from portal.models import Customer, SavedSegment, Store
from portal.params import parse_id
from portal.security import user_store_id
from portal.services import clock, settings
from portal.services.campaigns import campaigns as campaign_service
from portal.services.campaigns.quiet_hours import is_quiet, window_opens
from portal.services.customers.customers import FILTER_KEYS, filtered_customers
from portal.services.lists import registry, segments
from portal.sms_text import segment_info

PREVIEW_COUNT = 3


# --- audience --------------------------------------------------------------------------------


def customer_segments(user) -> list[SavedSegment]:
    """Saved segments of customer lists (customers, at-risk) in ``user``'s store scope, usable as an audience."""
    rows = db.session.scalars(segments.scoped(select(SavedSegment), user).order_by(SavedSegment.name, SavedSegment.id))
    out = []
    for s in rows:
        try:
            if registry.get(s.list_name).customer_type:
                out.append(s)
        except Exception:  # a list that is not registered (any more)
            continue
    return out


def segment_params(segment_id: str | int | None, user) -> dict[str, str] | None:
    """A saved segment's filters (only the customer filter keys); None when no segment is chosen.

    Raises ``segments.SegmentNotFound`` for an id that is absent or another store's: the filters must not
    silently fall back to the form's (the views answer 404).
    """
    if parse_id(segment_id) is None:
        return None
    segment = segments.get(parse_id(segment_id), user)
    if segment is None:
        raise segments.SegmentNotFound(segment_id)
    return {k: v for k, v in parse_qsl(segment.query or "") if k in FILTER_KEYS and v}


def audience_params(form_params: dict[str, str], segment_id: str | None, user) -> dict[str, str]:
    """The filters a campaign is built from: the segment's when one is chosen, else the form's."""
    from_segment = segment_params(segment_id, user)
    params = from_segment if from_segment is not None else form_params
    return {k: v for k, v in params.items() if k in FILTER_KEYS and v}


def control_size(share: float, eligible: int) -> int:
    """Customers held out of ``eligible`` (the outbox's own rounding)."""
    return round(share * eligible)


@dataclass
class AudienceSummary:
    """What the builder shows before anything is created."""

    filter: str
    total: int
    eligible: int
    control: int
    messages: int
    exclusions: list[dict] = field(default_factory=list)  # key, label, count (every reason, zeros too)
    problem: str = ""  # why the audience is empty when the reason is not an exclusion (an unknown customer id)

    @property
    def excluded(self) -> int:
        return sum(e["count"] for e in self.exclusions)

    def as_json(self) -> dict:
        return {**asdict(self), "excluded": self.excluded}


def audience_summary(
    params: dict[str, str], control_share: float, user, now: datetime | None = None
) -> AudienceSummary:
    """Size, eligible, control and messages of a filter, with every exclusion and its count."""
    audience = campaign_service.build_audience(params, user, now=now)
    eligible = len(audience.eligible)
    control = control_size(control_share, eligible)
    return AudienceSummary(
        filter=urlencode(params),
        total=audience.total,
        eligible=eligible,
        control=control,
        messages=eligible - control,
        exclusions=[
            {"key": k, "label": label, "count": audience.exclusions.get(k, 0)}
            for k, label in campaign_service.EXCLUSIONS.items()
        ],
        problem=campaign_service.missing_customer(params, audience.total),
    )


def target_customer(params: dict[str, str], user) -> Customer | None:
    """The one customer a ``customer=<external id>`` audience names, when ``user`` may see them."""
    external_id = (params.get("customer") or "").strip()
    if not external_id:
        return None
    return db.session.scalar(filtered_customers({"customer": external_id}, user))


# --- time zone, schedule, expiry ---------------------------------------------------------------


def campaign_zone(params: dict[str, str], user) -> tuple[ZoneInfo, Store | None]:
    """The zone a campaign's dates are typed in: its store's (the user's or the filter's), else the first store's."""
    store_id = campaign_service.campaign_store_id(params, user)
    store = db.session.get(Store, store_id) if store_id else None
    if store is None:
        store = db.session.scalar(select(Store).order_by(Store.id).limit(1))
    return clock.zone(store.timezone if store else "UTC"), store


def zone_of_campaign(campaign) -> tuple[ZoneInfo, Store | None]:
    """The zone a created campaign's schedule and expiry are shown in (its store's, else the first store's)."""
    store = db.session.get(Store, campaign.store_id) if campaign.store_id else None
    if store is None:
        store = db.session.scalar(select(Store).order_by(Store.id).limit(1))
    return clock.zone(store.timezone if store else "UTC"), store


def to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local wall time in ``zone`` as an aware UTC datetime."""
    return local.replace(tzinfo=zone).astimezone(timezone.utc)


def expiry_utc(day, zone: ZoneInfo) -> datetime:
    """The end of ``day`` (23:59:59 local) in UTC: an offer is good for the whole last day."""
    return to_utc(datetime.combine(day, time(23, 59, 59)), zone)


def default_expiry(zone: ZoneInfo, now: datetime | None = None):
    now = now or datetime.now(timezone.utc)
    return (now.astimezone(zone) + timedelta(days=campaign_service.DEFAULT_EXPIRY_DAYS)).date()


def quiet_note(zone: ZoneInfo, when: datetime | None, now: datetime | None = None) -> str:
    """Plain words about quiet hours for a send now (``when`` None) or at ``when`` (UTC)."""
    start, end = settings.get("sms.quiet_start"), settings.get("sms.quiet_end")
    if start == end:
        return ""
    now = now or datetime.now(timezone.utc)
    moment = when or now
    local = moment.astimezone(zone)
    rule = f"Quiet hours {start}–{end} ({zone.key}) apply"
    if is_quiet(local, start, end):
        opens = window_opens(moment, zone, start, end).astimezone(zone)
        return f"{rule}: {local:%H:%M} is within them, so messages wait until {opens:%Y-%m-%d %H:%M}."
    return f"{rule}: messages due then wait for {end}."


# --- message preview and cost ------------------------------------------------------------------


@dataclass
class PreviewSummary:
    """Rendered texts for the first eligible customers, their encoding, segments and the cost estimate."""

    previews: list[dict]
    example: bool  # True when nobody in the audience can be messaged and a made-up recipient is shown
    encoding: str
    characters: int
    segments: int
    per_segment_limit: int
    ucs2_chars: list[str]
    price_per_segment: float
    messages: int | None = None

    @property
    def cost(self) -> float | None:
        if self.messages is None:
            return None
        return round(self.messages * self.segments * self.price_per_segment, 4)

    @property
    def warning(self) -> str:
        if not self.ucs2_chars:
            return ""
        chars = ", ".join(f"“{c}” (U+{ord(c):04X})" for c in self.ucs2_chars)
        many = len(self.ucs2_chars) > 1
        return (
            f"{'These characters force' if many else 'This character forces'} UCS-2: {chars}. "
            f"A message then holds 70 characters (67 per part) instead of 160 (153 per part). "
            "Replace or remove {0} to send in GSM-7.".format("them" if many else "it")
        )

    def as_json(self) -> dict:
        return {**asdict(self), "cost": self.cost, "warning": self.warning}


def preview_summary(
    params: dict[str, str],
    template: str,
    user,
    expires_at: datetime | None = None,
    messages: int | None = None,
    now: datetime | None = None,
    count: int = PREVIEW_COUNT,
) -> PreviewSummary:
    """Render ``template`` for the first ``count`` eligible customers exactly as create_campaign would.

    Segments and the cost estimate use the longest preview (the confirm step then counts every
    real body). Raises CampaignError for an empty template or an unknown placeholder.
    """
    campaign_service.validate_template(template)
    people = campaign_service.build_audience(params, user, now=now, limit=count).eligible
    example = not people
    if example:
        store_id = campaign_service.campaign_store_id(params, user)
        people = [{"customer_id": None, "phone": "", "first_name": "", "tier": None, "store_id": store_id}]
    rendered = campaign_service.preview_bodies(
        template, people, expires_at=expires_at, store_id=campaign_service.campaign_store_id(params, user), now=now
    )
    infos = []
    for item in rendered:
        info = segment_info(item["body"])
        infos.append(info)
        item.update(
            encoding=info.encoding, characters=info.characters, segments=info.segments, ucs2_chars=info.ucs2_chars
        )
        if example:
            item["first_name"] = ""
    worst = max(infos, key=lambda i: (i.segments, i.characters))
    culprits = list(dict.fromkeys(ch for i in infos for ch in i.ucs2_chars))
    return PreviewSummary(
        previews=rendered,
        example=example,
        encoding=worst.encoding,
        characters=worst.characters,
        segments=worst.segments,
        per_segment_limit=worst.per_segment_limit,
        ucs2_chars=culprits,
        price_per_segment=float(settings.get("sms.price_per_segment")),
        messages=messages,
    )


def store_choices(user) -> list[tuple[str, str]]:
    """Stores the user may pick: everyone's for admins and store-less marketers, else their own."""
    own = user_store_id(user)
    query = select(Store.name).order_by(Store.name)
    if own is not None:
        query = query.where(Store.id == own)
    names = list(db.session.scalars(query))
    return ([("", "All stores")] if own is None else []) + [(n, n) for n in names]


def store_name(value: str | None) -> str | None:
    """A store given by id (as some links do) as its name, which the store picker uses."""
    value = (value or "").strip()
    if parse_id(value) is not None:
        found = db.session.scalar(select(Store.name).where(Store.id == parse_id(value)))
        return found or value
    return value


def campaign_stores(campaigns) -> dict[int, Store | None]:
    """Each campaign's store (else the first store, as zone_of_campaign), for a list page: one query."""
    stores = {s.id: s for s in db.session.scalars(select(Store).order_by(Store.id))}
    first = next(iter(stores.values()), None)
    return {c.id: stores.get(c.store_id) or first for c in campaigns}
