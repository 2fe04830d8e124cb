"""A campaign's numbers (results page, the campaign list's row, the dashboard's "last campaign") kept at write time.

Why: the campaign page, the list and the dashboard grouped the outbox (up to 100k rows a campaign) and
joined the recipients' purchase lines per request. They change only when the outbox or those lines
change, so each campaign keeps one stored row (``campaign_summaries``) with what
``results.measure`` and ``overview.measured`` count; a page finishes it for the moment it is viewed
(``results.build``, ``overview.conclude``: arithmetic and wording, no query).

Time passing: the results window runs from the first message for ``sms.result_days`` days, and the
page's words depend on the moment (day n of 30, "the window ended", when a result can come). Those are
worded from the stored window at each view, so they stay right without any refresh. The counts are
cut at the moment they were measured; they stay true later unless a purchase already on file
falls in the window after that moment (a line dated up to a day ahead): the row keeps when the earliest
such line enters the window (``valid_until``) and is measured again on the first view after it.
A row measured with another ``sms.result_days``, or in an older layout, is measured again on read.
So no schedule is needed: the hourly clock only asks again for refreshes that could not be queued.

When it is refreshed:
- during and at the end of every sending run (``after_send``: at most every few seconds while sending),
- after delivery callbacks, redemptions, opt-outs and erasures (``changed``), and after imports,
  undos and API purchases whose lines can fall in a window (``purchases_changed``): the rows are
  marked (``changed_at``) and one refresh job folds every marked row in (one queued at a time, so a
  burst of callbacks costs one computation per campaign); pages may lag by the time that job waits.
- a campaign without a row (new, or never viewed) is measured on its first view and stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from portal import jobs
from portal.extensions import db
from portal.models import Campaign, CampaignSummary, ImportRun, Job, OutboxMessage, PurchaseLine
from portal.services import settings
from portal.services.campaigns import overview, results
from portal.services.clock import aware, utcnow

log = logging.getLogger(__name__)

JOB = "summaries.refresh_campaigns"
VERSION = 1  # the stored layout; a row of another layout is measured again on read
QUEUED_FOR = timedelta(minutes=10)  # a queued refresh older than this is presumed lost (its runner died)
SEND_REFRESH_SECONDS = 5.0  # while sending, the campaign's row is refreshed at most this often
# Purchase times are store-local wall times, compared here with UTC windows: a day covers any offset.
ZONE_SLACK = timedelta(days=1)


def _quiet(*_args) -> None:
    """A progress callback that records nothing."""


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


# --------------------------------------------------------------------------- computing and storing


def compute(campaign_id: int, now: datetime | None = None) -> dict:
    """A campaign's stored numbers measured from the outbox and purchase lines at ``now`` (JSON-ready).

    Raises LookupError when there is no such campaign.
    """
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise LookupError(f"No campaign {campaign_id}.")
    now = now or utcnow()
    days = int(settings.get("sms.result_days"))
    row = overview.measured([campaign], now)[campaign.id]
    return {
        "version": VERSION,
        "days": days,
        "results": results.measure(campaign, now, days),
        "list": {
            "counts": dict(row.counts),
            "redeemed": row.redeemed,
            "first_send": row.first_send.isoformat() if row.first_send else None,
            "revenue": row.revenue,
            "buyers": dict(row.buyers),
        },
    }


def recount(campaign_id: int, data: dict) -> dict | None:
    """``data`` with only its outbox parts measured again (statuses, redemptions, opt-outs, messages left).

    For changes that touch no purchase line (callbacks, redemptions, opt-outs, erasures, sends after the
    first): the window's purchases, the costly part, stay as measured. None when a full measure is
    needed (nothing measured yet, another layout, or the first send moved the window).
    """
    raw = data.get("results")
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or raw is None or data.get("version") != VERSION:
        return None
    row = overview.counted([campaign])[campaign_id]
    if row.first_send is None or row.first_send.isoformat() != raw["start"]:
        return None
    fresh = {**raw, "delivery": results.delivery_counts(campaign_id, row.first_send)}
    if raw["groups"] is not None:
        fresh["left"] = results.messages_left(campaign_id)
    counts = {"counts": dict(row.counts), "redeemed": row.redeemed, "first_send": row.first_send.isoformat()}
    return {**data, "results": fresh, "list": {**data["list"], **counts}}


def _store(campaign_id: int, data: dict, at: datetime, started: datetime, full: bool = True) -> None:
    """Upsert a campaign's row and commit; a change marked after ``started`` stays marked (not folded in),
    and so does a change of purchase lines after an outbox-only ``recount`` (``full`` False)."""
    before = CampaignSummary.changed_at <= started
    if full:
        cleared = case((before, None), else_=CampaignSummary.changed_at)
        lines = case((before, False), else_=CampaignSummary.lines_changed)
    else:
        cleared = case((and_(before, CampaignSummary.lines_changed.is_(False)), None), else_=CampaignSummary.changed_at)
        lines = CampaignSummary.lines_changed
    done = db.session.execute(
        update(CampaignSummary)
        .where(CampaignSummary.campaign_id == campaign_id)
        .values(data=data, computed_at=at, changed_at=cleared, lines_changed=lines),
        execution_options={"synchronize_session": False},
    ).rowcount
    if done:
        db.session.commit()
        return
    db.session.add(
        CampaignSummary(campaign_id=campaign_id, data=data, computed_at=at, changed_at=None, lines_changed=False)
    )
    try:
        db.session.commit()
    except IntegrityError:  # another process stored it meanwhile: ours is as new, write it over
        db.session.rollback()
        db.session.execute(
            update(CampaignSummary).where(CampaignSummary.campaign_id == campaign_id).values(data=data, computed_at=at)
        )
        db.session.commit()


def refresh(campaign_ids: Iterable[int], now: datetime | None = None, outbox_only: Iterable[int] = ()) -> int:
    """Measure and store each campaign's numbers (commits per campaign); returns how many were stored.

    ``outbox_only``: those of ``campaign_ids`` whose purchase lines did not change: only their outbox
    parts are measured again (``recount``) when that is enough.
    """
    light = {int(i) for i in outbox_only}
    done = 0
    for campaign_id in sorted({int(i) for i in campaign_ids}):
        started = utcnow()
        at = now or started
        data = None
        if campaign_id in light and now is None:
            row = db.session.get(CampaignSummary, campaign_id)
            data = recount(campaign_id, row.data) if row is not None else None
        full = data is None
        if full:
            try:
                data = compute(campaign_id, at)
            except LookupError:  # deleted meanwhile: its row went with it (ON DELETE CASCADE)
                continue
        _store(campaign_id, data, at, started, full)
        done += 1
    db.session.expire_all()
    return done


def refresh_changed() -> int:
    """Refresh every row marked changed (the outbox parts alone where no purchase line changed); returns how many."""
    rows = db.session.execute(
        select(CampaignSummary.campaign_id, CampaignSummary.lines_changed).where(
            CampaignSummary.changed_at.is_not(None)
        )
    ).all()
    return refresh([cid for cid, _ in rows], outbox_only=[cid for cid, lines in rows if not lines]) if rows else 0


@jobs.job(JOB)
def refresh_job(progress=_quiet) -> dict:
    """Job entry point: fold every marked change into its campaign's numbers (see ``changed``)."""
    done = refresh_changed()
    return {"message": f"Numbers refreshed for {done} campaign{'s' if done != 1 else ''}."}


def request_refresh() -> None:
    """Queue the refresh job unless one is queued already (a queued job has not read the data yet)."""
    since = utcnow() - QUEUED_FOR
    queued = db.session.scalar(
        select(Job.id).where(Job.func == JOB, Job.status == "queued", Job.created_at >= since).limit(1)
    )
    if queued is None:
        jobs.enqueue(JOB, "Campaign numbers", user_email="worker")


def retry_changed() -> None:
    """For the hourly clock: queue the refresh when rows are marked changed and none is queued (never raises)."""
    try:
        if db.session.scalar(
            select(CampaignSummary.campaign_id).where(CampaignSummary.changed_at.is_not(None)).limit(1)
        ):
            request_refresh()
    except Exception:
        db.session.rollback()
        log.exception("campaign numbers: refresh could not be requested")


def _mark(where, lines: bool = False) -> int:
    """Mark the rows matching ``where`` changed (now; ``lines``: their purchase lines too) and commit."""
    values = {"changed_at": utcnow(), **({"lines_changed": True} if lines else {})}
    marked = db.session.execute(
        update(CampaignSummary).where(where).values(**values),
        execution_options={"synchronize_session": False},
    ).rowcount
    db.session.commit()
    return marked


def changed(campaign_ids: Iterable[int] = (), customer_ids: Iterable[int] = ()) -> None:
    """After a committed change to some campaigns' rows or recipients: mark them and ask for a refresh.

    ``customer_ids``: every campaign with one of them as a recipient (opt-outs count the messaged
    customers who opted out since the first message; an erasure cancels unsent rows). Never raises:
    the caller's work is committed already, and a failure here is logged.
    """
    try:
        campaigns = {int(i) for i in campaign_ids if i is not None}
        customers = sorted({int(i) for i in customer_ids if i is not None})
        clauses = []
        if campaigns:
            clauses.append(CampaignSummary.campaign_id.in_(sorted(campaigns)))
        if customers:
            recipients = select(OutboxMessage.campaign_id).where(OutboxMessage.customer_id.in_(customers)).distinct()
            clauses.append(CampaignSummary.campaign_id.in_(recipients))
        if clauses and _mark(or_(*clauses)):
            request_refresh()
    except Exception:
        db.session.rollback()
        log.exception("campaign numbers: refresh could not be requested")


def purchases_changed(store_ids: Iterable[int | None], first: datetime | None, last: datetime | None) -> None:
    """After purchase lines dated ``first``..``last`` (store-local) were added or removed in ``store_ids``.

    Marks the campaigns whose results window overlaps those dates (a purchase counts at any store),
    and those of the stores (or chain-wide ones) that have no buyer yet, whose wording names the
    latest purchase on file. Never raises (logged).
    """
    if first is None or last is None:
        return
    try:
        stores = {int(s) for s in store_ids if s is not None}
        low, high = aware(first) - ZONE_SLACK, aware(last) + ZONE_SLACK
        rows = db.session.execute(
            select(CampaignSummary.campaign_id, CampaignSummary.data, Campaign.store_id).join(
                Campaign, Campaign.id == CampaignSummary.campaign_id
            )
        ).all()
        hit = []
        for campaign_id, data, store_id in rows:
            raw = (data or {}).get("results")
            if raw is None:
                continue
            start, end = _when(raw["start"]), _when(raw["end"])
            groups = raw.get("groups") or {}
            nobody = sum(g.get("buyers", 0) for g in groups.values()) == 0
            if (start <= high and end >= low) or (nobody and (store_id is None or store_id in stores)):
                hit.append(campaign_id)
        db.session.rollback()
        if hit and _mark(CampaignSummary.campaign_id.in_(hit), lines=True):
            request_refresh()
    except Exception:
        db.session.rollback()
        log.exception("campaign numbers: refresh after purchases could not be requested")


def import_span(import_id: int) -> tuple[list[int], datetime | None, datetime | None]:
    """(stores, first, last purchase time) of an import's lines: what ``purchases_changed`` needs."""
    rows = db.session.execute(
        select(PurchaseLine.store_id, func.min(PurchaseLine.purchased_at), func.max(PurchaseLine.purchased_at))
        .where(PurchaseLine.import_id == import_id)
        .group_by(PurchaseLine.store_id)
    ).all()
    firsts = [first for _, first, _ in rows if first is not None]
    lasts = [last for _, _, last in rows if last is not None]
    return [s for s, _, _ in rows], min(firsts, default=None), max(lasts, default=None)


def after_import(import_id: int) -> None:
    """After an import committed: its purchase lines (transactions) or consent changes (customers). Never raises."""
    try:
        run = db.session.get(ImportRun, import_id)
        if run is None or run.status != "done":
            return
        if run.kind == "transactions":
            purchases_changed(*import_span(import_id))
        elif run.kind == "customers" and (run.options or {}).get("consent_changes"):
            # Opt-outs with their own dates, for customers of any campaign: every sent campaign's count may move.
            sent = select(Campaign.id).where(Campaign.started_at.is_not(None))
            if _mark(CampaignSummary.campaign_id.in_(sent)):
                request_refresh()
    except Exception:
        db.session.rollback()
        log.exception("campaign numbers: refresh after import #%s could not be requested", import_id)


class SendRefresher:
    """Refresh a campaign's row while it sends (at most every ``SEND_REFRESH_SECONDS``) and when a run ends.

    The sending job holds the job runner (one job at a time per database on the embedded runner), so
    it also folds in the rows other changes marked meanwhile. Never raises (logged): sending goes on.
    """

    def __init__(self, campaign_id: int, every: float = SEND_REFRESH_SECONDS):
        self.campaign_id = campaign_id
        self.every = every
        self.last = time.monotonic()
        self.cost = 0.0  # seconds the last refresh took: refreshes keep under a tenth of the run's time

    def __call__(self, final: bool = False) -> None:
        if not final and time.monotonic() - self.last < max(self.every, 10 * self.cost):
            return
        started = time.monotonic()
        try:
            # While sending only the outbox moves (the first batch sets the window: measured in full then).
            refresh([self.campaign_id], outbox_only=[] if final else [self.campaign_id])
            refresh_changed()
        except Exception:
            db.session.rollback()
            log.exception("campaign numbers of campaign %s not refreshed", self.campaign_id)
        self.last = time.monotonic()
        self.cost = self.last - started


# --------------------------------------------------------------------------- reading


@dataclass
class Summary:
    """One campaign's stored numbers and when they were measured."""

    campaign_id: int
    data: dict
    as_of: datetime

    def results(self, now: datetime | None = None) -> results.Results | None:
        """The campaign page's Results for ``now`` (None before anything was sent)."""
        raw = self.data["results"]
        return results.build(raw, now or utcnow()) if raw is not None else None

    def numbers(self) -> overview.CampaignNumbers:
        """The campaign list's row."""
        stored = self.data["list"]
        row = overview.CampaignNumbers(
            counts=dict(stored["counts"]),
            redeemed=stored["redeemed"],
            first_send=_when(stored["first_send"]),
            revenue=stored["revenue"],
            buyers=dict(stored["buyers"]),
        )
        overview.conclude(row)
        return row

    @property
    def counts(self) -> dict[str, int]:
        """Outbox rows per status (control rows included)."""
        return dict(self.data["list"]["counts"])


def _state(data: dict, now: datetime, days: int) -> str:
    """'ok' (the stored numbers hold at ``now``), 'stale' (measure again and store) or 'past' (``now`` is
    before the moment they were measured: measure for it without storing)."""
    if data.get("version") != VERSION or data.get("days") != days:
        return "stale"
    raw = data.get("results")
    if raw is None:
        return "ok"
    cut = min(_when(raw["end"]), now)
    if cut < _when(raw["upto"]):
        return "past"
    valid_until = _when(raw.get("valid_until"))
    return "stale" if valid_until is not None and cut > valid_until else "ok"


def read_many(campaigns: Iterable[Campaign], now: datetime | None = None) -> dict[int, Summary]:
    """Each campaign's stored numbers, keyed by id; a missing or outdated row is measured once and stored."""
    now = now or utcnow()
    wanted = {c.id: c for c in campaigns}
    if not wanted:
        return {}
    days = int(settings.get("sms.result_days"))
    rows = {
        r.campaign_id: r
        for r in db.session.scalars(select(CampaignSummary).where(CampaignSummary.campaign_id.in_(list(wanted))))
    }
    out: dict[int, Summary] = {}
    redo = []
    for campaign_id in wanted:
        row = rows.get(campaign_id)
        state = _state(row.data or {}, now, days) if row is not None else "stale"
        if state == "ok":
            out[campaign_id] = Summary(campaign_id, row.data, aware(row.computed_at))
        elif state == "past":
            out[campaign_id] = Summary(campaign_id, compute(campaign_id, now), now)
        else:
            redo.append(campaign_id)
    if redo:
        refresh(redo)
        rows = {
            r.campaign_id: r
            for r in db.session.scalars(select(CampaignSummary).where(CampaignSummary.campaign_id.in_(redo)))
        }
        for campaign_id in redo:
            row = rows.get(campaign_id)
            if row is not None and _state(row.data, now, days) == "ok":
                out[campaign_id] = Summary(campaign_id, row.data, aware(row.computed_at))
            else:  # viewed for another moment than the clock's (tests, a host's clock behind)
                out[campaign_id] = Summary(campaign_id, compute(campaign_id, now), now)
    return out


def read(campaign: Campaign, now: datetime | None = None) -> Summary:
    """One campaign's stored numbers (``read_many`` for one)."""
    return read_many([campaign], now)[campaign.id]


def numbers(campaigns: list[Campaign], now: datetime | None = None) -> tuple[dict, datetime | None]:
    """The campaign list's rows (as ``overview.campaign_numbers`` returns them) and the oldest "as of"."""
    summaries = read_many(campaigns, now)
    as_of = min((s.as_of for s in summaries.values()), default=None)
    return {cid: s.numbers() for cid, s in summaries.items()}, as_of
