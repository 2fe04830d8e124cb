"""API tokens: created by a user for themselves (or by an admin for anyone), shown once, stored hashed.

A token carries no rights of its own: every API request runs as the token's user, through the same
scoping functions as the pages (``portal.security.scope_to_user`` and the services that use it), so a
token never sees more than its user. Revocation, expiry and the user's deactivation are checked on
every request, so each takes effect at once.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update

from portal.extensions import db
from portal.models import ApiToken, User
from portal.services import audit

SECRET_BYTES = 32
TOKEN_PREFIX = "lyl_"  # tells a Loyalist token apart in a config file or a secret scanner
MAX_DAYS = 3650
LAST_USED_RESOLUTION = timedelta(minutes=1)  # last_used_at is written at most once a minute per token


class TokenError(ValueError):
    """A token that cannot be created or changed; the message is for the form."""


def hash_secret(secret: str) -> str:
    """The sha256 (hex) a token is stored and looked up by: a 32-byte random secret needs no slow KDF."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create(user: User, name: str, days: int | None, acting: User) -> tuple[ApiToken, str]:
    """A new token for ``user`` named ``name``, valid ``days`` days (None: no expiry); commits, audited.

    Returns:
        (the token row, the secret): the secret is shown once and never stored.
    """
    name = (name or "").strip()
    if not name or len(name) > 80:
        raise TokenError("Give the token a name of 1 to 80 characters (e.g. the till or shop that uses it).")
    if acting.id != user.id and acting.role != "admin":
        raise TokenError("Only admins create tokens for other users.")
    if not user.active:
        raise TokenError("This user is deactivated.")
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise TokenError(f"The expiry must be between 1 and {MAX_DAYS} days.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    now = datetime.now(timezone.utc)
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_secret(secret),
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        created_by=acting.email,
        created_at=now,
        expires_at=now + timedelta(days=days) if days else None,
    )
    db.session.add(token)
    db.session.flush()
    audit.record(
        "api_token.create",
        f"api_token:{token.id}",
        {"user": user.email, "name": name, "expires_at": token.expires_at.isoformat() if token.expires_at else None},
        acting.email,
    )
    db.session.commit()
    return token, secret


def tokens_of(user: User) -> list[ApiToken]:
    """A user's tokens, newest first (revoked and expired ones included, marked by their dates)."""
    return list(db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())))


def get_manageable(token_id: int, acting: User) -> ApiToken | None:
    """A token ``acting`` may manage (their own; any for an admin), or None (the page answers 404)."""
    token = db.session.get(ApiToken, token_id)
    if token is None or (token.user_id != acting.id and acting.role != "admin"):
        return None
    return token


def revoke(token: ApiToken, acting: User) -> None:
    """Revoke ``token`` at once (the next request with it is refused); commits, audited."""
    if token.revoked_at is not None:
        raise TokenError("This token is already revoked.")
    token.revoked_at = datetime.now(timezone.utc)
    audit.record(
        "api_token.revoke", f"api_token:{token.id}", {"user": token.user.email, "name": token.name}, acting.email
    )
    db.session.commit()


def state(token: ApiToken, now: datetime | None = None) -> str:
    """'active', 'revoked' or 'expired', for the tokens page."""
    now = now or datetime.now(timezone.utc)
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and _aware(token.expires_at) <= now:
        return "expired"
    return "active"


def authenticate(secret: str | None) -> tuple[ApiToken, User] | None:
    """The live token and its active user for a presented secret, or None (unknown, revoked, expired, inactive).

    Records ``last_used_at`` (at most once a minute, in its own small commit).
    """
    if not secret or len(secret) > 200:
        return None
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_secret(secret)))
    if token is None:
        return None
    now = datetime.now(timezone.utc)
    if state(token, now) != "active":
        return None
    user = db.session.get(User, token.user_id)
    if user is None or not user.active:
        return None
    if token.last_used_at is None or now - _aware(token.last_used_at) >= LAST_USED_RESOLUTION:
        db.session.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
        db.session.commit()
    return token, user


def _aware(value: datetime) -> datetime:
    """SQLite returns naive datetimes for timezone-aware columns: they are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
