"""One worker's pass over a campaign's outbox: the row state machine of the exactly-once design.

docs/sending.md explains the design; portal/services/campaigns/sending.py drives the runs;
this module holds what a run does to rows: recover the rows of dead workers, hold the rows of
stores in quiet hours, claim a batch, then per row check → mark sending → send → record, and
ask Twilio about rows in doubt. Every state change is its own compare-and-set UPDATE,
committed before the next step, so the database always says where a row is.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from portal import sms
from portal.extensions import db
from portal.models import Campaign, Customer, OutboxMessage, Store
from portal.services.campaigns.outbox import NO_SYNC, apply_pending_events
from portal.services.campaigns.quiet_hours import window_opens
from portal.services.campaigns.send_options import SendOptions
from portal.services.clock import aware, zone
from portal.services.customers.customers import announce_opt_outs, set_consent

GIVE_UP_LOOKUPS_AFTER = timedelta(days=1)


class CampaignStopped(Exception):
    """The campaign cannot go on (account or sender problem); the message is for the user."""


class TwilioUnreachable(Exception):
    """Several sends in a row made no connection to Twilio: pause the campaign; every row stays unsent."""


class SendRun:
    """One worker's pass over a campaign. Every state change is its own committed UPDATE."""

    def __init__(self, campaign: Campaign, gateway, opts: SendOptions, callback_url: str | None):
        self.campaign_id = campaign.id
        self.created_at = aware(campaign.created_at)
        self.gateway = gateway
        self.opts = opts
        self.callback_url = callback_url
        self.token = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.next_send = 0.0  # monotonic time of the next allowed send (rate limit)
        self.unreachable = 0  # sends in a row that made no connection to Twilio
        self.stores = {s.id: s for s in db.session.scalars(select(Store))}
        self.default_tz = (
            zone(self.stores[campaign.store_id].timezone) if campaign.store_id in self.stores else zone("UTC")
        )

    # ---- helpers
    def now(self) -> datetime:
        return self.opts.now()

    def _cas(self, row_id: int, expected: tuple[str, ...], **values) -> bool:
        """Compare-and-set one row held by this worker; commit; True when it applied."""
        result = db.session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == row_id, OutboxMessage.claimed_by == self.token, OutboxMessage.status.in_(expected)
            )
            .values(**values),
            execution_options=NO_SYNC,
        )
        db.session.commit()
        return result.rowcount == 1

    def _store_filter(self, store_ids: list[int | None]):
        column = Customer.store_id
        known = [s for s in store_ids if s is not None]
        clauses = [column.in_(known)] if known else []
        if None in store_ids:
            clauses.append(column.is_(None))
            clauses.append(column.notin_(list(self.stores)) if self.stores else column.isnot(None))
        return or_(*clauses) if clauses else column.is_(None) & column.isnot(None)

    # ---- recovery and quiet hours
    def recover(self) -> None:
        """Take back rows of dead workers: claimed → pending, checking/stale sending → in doubt."""
        now = self.now()
        base = update(OutboxMessage).where(OutboxMessage.campaign_id == self.campaign_id)
        db.session.execute(
            base.where(OutboxMessage.status == "claimed", OutboxMessage.next_attempt_at < now).values(
                status="pending", claimed_by=None, next_attempt_at=now
            ),
            execution_options=NO_SYNC,
        )
        db.session.execute(
            base.where(OutboxMessage.status == "checking", OutboxMessage.next_attempt_at < now).values(
                status="in_doubt", claimed_by=None, next_attempt_at=now
            ),
            execution_options=NO_SYNC,
        )
        stale = now - timedelta(seconds=self.opts.lease_seconds)
        db.session.execute(
            base.where(OutboxMessage.status == "sending", OutboxMessage.claimed_at < stale).values(
                status="in_doubt",
                claimed_by=None,
                next_attempt_at=now,
                error_message="worker stopped during the send; checking with Twilio",
            ),
            execution_options=NO_SYNC,
        )
        db.session.commit()

    def open_stores(self) -> list[int | None]:
        """Store ids (None: customers without a known store) where it is not quiet hours now;
        rows of the others get next_attempt_at = their window's start."""
        now = self.now()
        zones: dict[int | None, ZoneInfo] = {sid: zone(s.timezone) for sid, s in self.stores.items()}
        zones[None] = self.default_tz
        open_ids: list[int | None] = []
        for sid, tz in zones.items():
            opens = window_opens(now, tz, self.opts.quiet_start, self.opts.quiet_end)
            if opens <= now:
                open_ids.append(sid)
                continue
            customers = select(Customer.id).where(self._store_filter([sid]))
            db.session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.campaign_id == self.campaign_id,
                    OutboxMessage.status.in_(("pending", "in_doubt")),
                    or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at < opens),
                    OutboxMessage.customer_id.in_(customers),
                )
                .values(next_attempt_at=opens),
                execution_options=NO_SYNC,
            )
        db.session.commit()
        return open_ids

    # ---- claiming
    def claim(self, open_ids: list[int | None], limit: int) -> list:
        """Atomically take up to ``limit`` due rows (pending → claimed, in_doubt → checking)."""
        if not open_ids:
            return []
        now = self.now()
        due = (
            select(OutboxMessage.id)
            .join(Customer, Customer.id == OutboxMessage.customer_id)
            .where(
                OutboxMessage.campaign_id == self.campaign_id,
                OutboxMessage.status.in_(("pending", "in_doubt")),
                or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now),
                self._store_filter(open_ids),
            )
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
        if db.engine.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True, of=OutboxMessage)
        lease_until = now + timedelta(seconds=self.opts.lease_seconds)
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(due), OutboxMessage.status.in_(("pending", "in_doubt")))
            .values(
                status=case((OutboxMessage.status == "pending", "claimed"), else_="checking"),
                claimed_by=self.token,
                next_attempt_at=lease_until,
            ),
            execution_options=NO_SYNC,
        )
        db.session.commit()
        # Plain rows (not ORM objects): a snapshot that commits do not expire.
        return list(
            db.session.execute(
                select(
                    OutboxMessage.id,
                    OutboxMessage.customer_id,
                    OutboxMessage.phone,
                    OutboxMessage.body,
                    OutboxMessage.status,
                    OutboxMessage.attempts,
                    OutboxMessage.claimed_at,
                    OutboxMessage.error_message,
                )
                .where(OutboxMessage.claimed_by == self.token, OutboxMessage.status.in_(("claimed", "checking")))
                .order_by(OutboxMessage.id)
            )
        )

    # ---- one row
    def still_allowed(self, row: OutboxMessage) -> str | None:
        """Why a claimed row may no longer be sent (opt-out since creation, cap, erasure), or None."""
        customer = db.session.get(Customer, row.customer_id)
        if customer is None or customer.erased_at is not None:
            return "customer erased"
        if customer.sms_consent == "opted_out":
            return "opted out after the campaign was created"
        if customer.sms_consent != "opted_in":
            return "no recorded opt-in"
        last = aware(customer.last_sms_at)
        cap = self.opts.frequency_cap_days
        if cap and last is not None and last > self.created_at and last > self.now() - timedelta(days=cap):
            return "messaged by another campaign within the frequency cap"
        return None

    def process(self, row: OutboxMessage, cancelled: bool) -> None:
        if row.status == "checking":
            if not self.resolve(row, cancelled):
                return
        else:
            if cancelled:
                self._cas(row.id, ("claimed",), status="cancelled", claimed_by=None, next_attempt_at=None)
                return
            reason = self.still_allowed(row)
            if reason:
                self._cas(
                    row.id, ("claimed",), status="skipped", error_message=reason, claimed_by=None, next_attempt_at=None
                )
                return
        self.wait_for_rate()
        attempt_at = self.now()
        if not self._cas(
            row.id,
            ("claimed", "checking"),
            status="sending",
            claimed_at=attempt_at,
            attempts=OutboxMessage.attempts + 1,
            next_attempt_at=None,
        ):
            return  # another worker took the row over (our lease expired)
        result = self.gateway.send(row.phone, row.body, status_callback=self.callback_url)
        self.record(row, result, attempts=(row.attempts or 0) + 1)

    def resolve(self, row: OutboxMessage, cancelled: bool) -> bool:
        """An in-doubt row: record the SID if Twilio has the message; True when it must be sent."""
        now = self.now()
        since = min(self.created_at, aware(row.claimed_at) or self.created_at) - timedelta(minutes=1)
        try:
            sid = self.gateway.find_sent(row.phone, row.body, since)
        except sms.SmsLookupError as exc:
            age = now - (aware(row.claimed_at) or now)
            if age > GIVE_UP_LOOKUPS_AFTER:
                self._cas(
                    row.id,
                    ("checking",),
                    status="unknown",
                    claimed_by=None,
                    next_attempt_at=None,
                    error_message=f"could not learn from Twilio whether it was sent: {exc}"[:400],
                )
            else:
                wait = min(max(self.opts.lookup_delay_seconds, age.total_seconds() / 2), self.opts.backoff_max_seconds)
                self._cas(
                    row.id,
                    ("checking",),
                    status="in_doubt",
                    claimed_by=None,
                    next_attempt_at=now + timedelta(seconds=wait),
                    error_message=f"lookup failed, will ask again: {exc}"[:400],
                )
            return False
        if sid:
            self._record_sent(row, sid, "sent", dry_run=False, expected=("checking",))
            return False
        if cancelled:
            self._cas(row.id, ("checking",), status="cancelled", claimed_by=None, next_attempt_at=None)
            return False
        if (row.attempts or 0) >= self.opts.max_attempts:
            self._cas(
                row.id,
                ("checking",),
                status="failed",
                claimed_by=None,
                next_attempt_at=None,
                error_message=f"not sent after {row.attempts} attempts: {row.error_message or ''}"[:400],
            )
            return False
        return True

    def wait_for_rate(self) -> None:
        gap = 1.0 / self.opts.rate_per_second if self.opts.rate_per_second > 0 else 0.0
        now = self.opts.monotonic()
        if self.next_send > now:
            self.opts.sleep(self.next_send - now)
            now = self.opts.monotonic()
        self.next_send = max(self.next_send, now) + gap

    def record(self, row: OutboxMessage, result: sms.SendResult, attempts: int) -> None:
        """Store what the send did; decide retry, doubt, failure or stop."""
        now = self.now()
        error = {"error_code": result.error_code, "error_message": (result.error_message or "")[:400] or None}
        never_reached = result.retryable and not result.maybe_sent and result.http_status is None
        self.unreachable = self.unreachable + 1 if never_reached else 0
        if never_reached:
            # Twilio never saw this request: no attempt is used up, so an outage cannot fail messages.
            delay = min(self.opts.backoff_base_seconds * 2 ** (self.unreachable - 1), self.opts.backoff_max_seconds)
            self._cas(
                row.id,
                ("sending",),
                status="pending",
                attempts=OutboxMessage.attempts - 1,
                claimed_by=None,
                next_attempt_at=now + timedelta(seconds=delay),
                **error,
            )
            if self.unreachable >= self.opts.max_attempts:
                raise TwilioUnreachable(
                    f"{self.unreachable} sends in a row could not connect to Twilio "
                    f"({result.error_message or 'no connection'})"
                )
        elif result.accepted:
            self._record_sent(
                row,
                result.sid,
                "dry-run" if result.dry_run else "sent",
                result.dry_run,
                ("sending",),
                error_code=result.error_code,
            )
        elif result.account_error:
            self._cas(
                row.id,
                ("sending",),
                status="pending",
                attempts=OutboxMessage.attempts - 1,
                claimed_by=None,
                next_attempt_at=None,
                **error,
            )
            raise CampaignStopped(
                f"Twilio refused the account or sender ({result.error_code or result.http_status}: "
                f"{result.error_message}). Sending stopped; fix the Twilio settings and send again."
            )
        elif result.retryable and result.maybe_sent:
            self._cas(
                row.id,
                ("sending",),
                status="in_doubt",
                claimed_by=None,
                next_attempt_at=now + timedelta(seconds=self.opts.lookup_delay_seconds),
                **error,
            )
        elif result.retryable:
            if attempts >= self.opts.max_attempts:
                self._cas(row.id, ("sending",), status="failed", claimed_by=None, next_attempt_at=None, **error)
            else:
                delay = min(self.opts.backoff_base_seconds * 2 ** (attempts - 1), self.opts.backoff_max_seconds)
                self._cas(
                    row.id,
                    ("sending",),
                    status="pending",
                    claimed_by=None,
                    next_attempt_at=now + timedelta(seconds=delay),
                    **error,
                )
        else:
            if (
                self._cas(row.id, ("sending",), status="failed", claimed_by=None, next_attempt_at=None, **error)
                and result.opted_out
            ):
                customer = db.session.get(Customer, row.customer_id)
                if customer is not None and customer.sms_consent != "opted_out":
                    set_consent(
                        customer,
                        "opted_out",
                        "twilio_21610",
                        effective_at=now,
                        user_email="twilio",
                        detail=f"Twilio error 21610 sending campaign {self.campaign_id}",
                    )
                    db.session.commit()
                    announce_opt_outs([customer], "twilio")

    def _record_sent(
        self,
        row: OutboxMessage,
        sid: str,
        status: str,
        dry_run: bool,
        expected: tuple[str, ...],
        error_code: int | None = None,
    ) -> None:
        now = self.now()
        values = dict(
            status=status,
            message_sid=sid,
            sent_at=now,
            claimed_by=None,
            next_attempt_at=None,
            error_code=error_code,
            error_message=None,
        )
        try:
            result = db.session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == row.id,
                    OutboxMessage.claimed_by == self.token,
                    OutboxMessage.status.in_(expected),
                )
                .values(**values),
                execution_options=NO_SYNC,
            )
            if result.rowcount == 1:
                # A dry-run send is a rehearsal of the real one: it counts toward the frequency cap too.
                db.session.execute(
                    update(Customer).where(Customer.id == row.customer_id).values(last_sms_at=now),
                    execution_options=NO_SYNC,
                )
            if result.rowcount == 1 and not dry_run:
                apply_pending_events(sid)
            db.session.commit()
        except IntegrityError:  # a SID already on another row: keep the fact it was sent
            db.session.rollback()
            values.update(message_sid=None, error_message=f"gateway returned a SID already recorded: {sid}")
            self._cas(row.id, expected, **values)

    # ---- bookkeeping
    def counts(self) -> dict[str, int]:
        rows = db.session.execute(
            select(OutboxMessage.status, func.count())
            .where(OutboxMessage.campaign_id == self.campaign_id)
            .group_by(OutboxMessage.status)
        )
        return dict(rows.all())

    def next_due(self) -> datetime | None:
        """Earliest moment a row not yet final may need this worker (due, lease expiry)."""
        pending = db.session.scalar(
            select(func.min(OutboxMessage.next_attempt_at)).where(
                OutboxMessage.campaign_id == self.campaign_id,
                OutboxMessage.status.in_(("pending", "in_doubt", "claimed", "checking")),
            )
        )
        sending = db.session.scalar(
            select(func.min(OutboxMessage.claimed_at)).where(
                OutboxMessage.campaign_id == self.campaign_id, OutboxMessage.status == "sending"
            )
        )
        candidates = [aware(pending)] if pending is not None else []
        if sending is not None:
            candidates.append(aware(sending) + timedelta(seconds=self.opts.lease_seconds))
        has_undated = db.session.scalar(
            select(func.count()).where(
                OutboxMessage.campaign_id == self.campaign_id,
                OutboxMessage.status.in_(("pending", "in_doubt")),
                OutboxMessage.next_attempt_at.is_(None),
            )
        )
        if has_undated:
            candidates.append(self.now())
        return min(candidates) if candidates else None
