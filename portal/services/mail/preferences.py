"""Who gets which e-mail: per-user choices with defaults, and signed unsubscribe links (no login needed)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

from portal.extensions import db
from portal.models import MailPreference, User
from portal.services import audit

# Mail kinds a user can switch on and off; each is also a MailMessage.kind and its unsubscribe scope.
KINDS = ("digest", "risk", "failures", "paused", "optouts")
ALERT_KINDS = KINDS[1:]
LABELS = {
    "digest": "Weekly digest",
    "risk": "Valuable customers who became High risk or Lapsing",
    "failures": "An import or a training run failed",
    "paused": "A campaign or an automation paused",
    "optouts": "Opt-outs spiked after a send",
}
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DEFAULT_WEEKDAY, DEFAULT_HOUR = 0, 8
_SALT = "mail-unsubscribe"


class InvalidLink(ValueError):
    """An unsubscribe link that was altered, truncated or names no user."""


@dataclass
class Choices:
    """A user's mail choices (the saved row, or the defaults for a user who never saved any)."""

    digest: bool = True
    risk: bool = True
    failures: bool = True
    paused: bool = True
    optouts: bool = True
    digest_weekday: int = DEFAULT_WEEKDAY
    digest_hour: int = DEFAULT_HOUR

    def wants(self, kind: str) -> bool:
        return bool(getattr(self, kind))


def _from_row(row: MailPreference | None) -> Choices:
    if row is None:
        return Choices()
    return Choices(
        **{k: bool(getattr(row, k)) for k in KINDS},
        digest_weekday=row.digest_weekday,
        digest_hour=row.digest_hour,
    )


def for_user(user_id: int) -> Choices:
    """The user's choices; a user who never saved any gets every alert and the digest on Monday 08:00."""
    return _from_row(db.session.get(MailPreference, user_id))


def all_choices() -> dict[int, Choices]:
    """Every saved choice by user id, in one query (the jobs read them for all users)."""
    return {row.user_id: _from_row(row) for row in db.session.scalars(db.select(MailPreference))}


def save(user: User, wanted: dict[str, bool], weekday: int, hour: int, by: str | None = None) -> None:
    """Store the user's choices (audited). Raises ValueError for a weekday or hour out of range."""
    if not (0 <= int(weekday) <= 6 and 0 <= int(hour) <= 23):
        raise ValueError("Pick a weekday and an hour from the lists.")
    row = db.session.get(MailPreference, user.id) or MailPreference(user_id=user.id)
    for kind in KINDS:
        setattr(row, kind, bool(wanted.get(kind)))
    row.digest_weekday, row.digest_hour = int(weekday), int(hour)
    db.session.add(row)
    audit.record(
        "mail.preferences",
        f"user:{user.id}",
        {"on": [k for k in KINDS if wanted.get(k)], "digest_at": f"{WEEKDAYS[int(weekday)]} {int(hour):02d}:00"},
        by or user.email,
    )
    db.session.commit()


def token(user_id: int, kind: str) -> str:
    """The signed part of an unsubscribe link for one user and one kind of mail."""
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=_SALT).dumps([int(user_id), kind])


def read_token(value: str) -> tuple[User, str]:
    """The user and kind an unsubscribe link names; InvalidLink when it was tampered with."""
    try:
        user_id, kind = URLSafeSerializer(current_app.config["SECRET_KEY"], salt=_SALT).loads(value)
    except (BadSignature, ValueError, TypeError):
        raise InvalidLink("This unsubscribe link is not valid (it was changed or cut short).") from None
    user = db.session.get(User, user_id) if isinstance(user_id, int) else None
    if user is None or kind not in KINDS:
        raise InvalidLink("This unsubscribe link is not valid (it was changed or cut short).")
    return user, kind


def unsubscribe(value: str) -> tuple[User, str]:
    """Switch off the kind of mail a signed link names, for its user (no login: the signature is the proof).

    Idempotent; audited. Returns the user and the kind. Raises InvalidLink for a tampered link.
    """
    user, kind = read_token(value)
    choices = for_user(user.id)
    if choices.wants(kind):
        wanted = {k: choices.wants(k) and k != kind for k in KINDS}
        row = db.session.get(MailPreference, user.id) or MailPreference(user_id=user.id)
        for k in KINDS:
            setattr(row, k, wanted[k])
        row.digest_weekday, row.digest_hour = choices.digest_weekday, choices.digest_hour
        db.session.add(row)
        audit.record("mail.unsubscribe", f"user:{user.id}", {"kind": kind}, user.email)
        db.session.commit()
    return user, kind
