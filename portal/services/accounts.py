"""Users and logins: creation, password changes and login throttling (all audited)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from flask import current_app, has_app_context
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from portal.extensions import db
from portal.models import ROLES, LoginAttempt, Store, User
from portal.services import audit

# Throttling (see throttle_wait): a few free failures per account + address pair, then a delay
# that doubles with each failure, up to the window; failures older than the window are forgotten.
FREE_FAILURES = 5
FIRST_DELAY = timedelta(seconds=30)
WINDOW = timedelta(minutes=15)
# Above this many failures in an hour on one account (from every address), only addresses the
# user has logged in from before may try it (ASVS 2.2.1: at most 100 failed attempts an hour).
ACCOUNT_CEILING = 100
CEILING_WINDOW = timedelta(hours=1)
MIN_PASSWORD = 10
# The common-password list zxcvbn ships (30,000 passwords, most used first).
COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"])


class AccountError(ValueError):
    """A refused account change; the message is for the user."""


class WeakPasswordError(AccountError):
    """A password refused by check_password_strength (forms show it on the new-password field)."""


def generate_password(email: str | None = None) -> str:
    """A random password to show once (about 96 bits) that passes check_password_strength for ``email``."""
    while True:
        password = secrets.token_urlsafe(12)
        try:
            check_password_strength(password, email)
        except WeakPasswordError:
            continue
        return password


def check_password_strength(password: str, email: str | None = None) -> None:
    """Refuse short passwords, the commonest ones, and ones built from the user's own e-mail.

    Attackers try leaked and common passwords and the user's own name first, so length alone
    is no defence; the message says which rule failed.
    """
    if len(password) < MIN_PASSWORD:
        raise WeakPasswordError(f"Password must have at least {MIN_PASSWORD} characters.")
    if password.lower() in COMMON_PASSWORDS:
        raise WeakPasswordError(
            "This password is one of the most common ones, which attackers try first: choose another."
        )
    email = normalise_email(email or "")
    local = email.split("@")[0]
    lowered = password.lower()
    if email and (email in lowered or (len(local) >= 4 and local in lowered)):
        raise WeakPasswordError(
            "The password must not contain the account's e-mail address or the part before the @: choose another."
        )


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def create_user(email: str, role: str, password: str, store_name: str | None = None, actor: str | None = None) -> User:
    """Create a user; managers must belong to a store."""
    email = normalise_email(email)
    if "@" not in email or len(email) > 254:
        raise AccountError("Enter a valid e-mail address.")
    if role not in ROLES:
        raise AccountError(f"Role must be one of {', '.join(ROLES)}.")
    if db.session.scalar(select(User).where(User.email == email)):
        raise AccountError(f"A user {email} already exists.")
    store = None
    if store_name:
        store = db.session.scalar(select(Store).where(Store.name == store_name))
        if store is None:
            raise AccountError(f"No store named {store_name!r}.")
    if role == "manager" and store is None:
        raise AccountError("A manager belongs to one store: choose it.")
    check_password_strength(password, email)
    user = User(email=email, role=role, store=store, active=True)
    user.set_password(password)
    db.session.add(user)
    audit.record("user.create", email, {"role": role, "store": store_name}, actor)
    db.session.commit()
    return user


def update_user(user: User, role: str, store_id: int | None, active: bool, actor: str | None) -> None:
    """Change a user's role, store or active flag (audited with before/after)."""
    if role not in ROLES:
        raise AccountError("Unknown role.")
    if role == "manager" and not store_id:
        raise AccountError("A manager belongs to one store: choose it.")
    before = {"role": user.role, "store_id": user.store_id, "active": user.active}
    if user.role == "admin" and (role != "admin" or not active):
        others = db.session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == "admin", User.active.is_(True), User.id != user.id)
        )
        if not others:
            raise AccountError("This is the last active admin; make another admin first.")
    if (user.role, user.store_id, user.active) != (role, store_id, active):
        end_sessions(user)  # sessions hold no copy of the role, but a changed user logs in again
    user.role, user.store_id, user.active = role, store_id, active
    audit.record(
        "user.update",
        user.email,
        {"before": before, "after": {"role": role, "store_id": store_id, "active": active}},
        actor,
    )
    db.session.commit()


def reset_password(user: User, actor: str | None) -> str:
    """Give a user a new random password (shown once to the admin), audited."""
    password = generate_password(user.email)
    user.set_password(password)
    end_sessions(user)
    audit.record("user.password_reset", user.email, None, actor)
    db.session.commit()
    return password


def change_own_password(user: User, current: str, new: str) -> None:
    """Change one's password and end every other session (the caller re-stamps its own)."""
    if not user.check_password(current):
        raise AccountError("Current password is wrong.")
    check_password_strength(new, user.email)
    user.set_password(new)
    end_sessions(user)
    audit.record("user.password_change", user.email, None, user.email)
    db.session.commit()


def end_sessions(user: User) -> None:
    """Bump the user's session version: every session stamped with the old one is refused (no commit)."""
    user.session_version = (user.session_version or 0) + 1


def logout(user: User) -> None:
    """Logging out ends the user's sessions on every device, not only this cookie."""
    end_sessions(user)
    audit.record("logout", user.email, None, user.email)
    db.session.commit()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)  # SQLite drops the zone


def throttle_wait(email: str, address: str, now: datetime | None = None) -> int:
    """Seconds this account + address pair must wait before its next try (0: try now).

    Keyed by the pair, with a delay that doubles per failure (30 s after the 5th, up to 15 min),
    so failures from one address never stop the user at another, and nobody is locked out for
    longer than the window. There is deliberately no per-address limit: one would let anyone
    behind a shared address (an office, a shop's NAT) lock everyone else there out, and sparing
    existing accounts from it would tell an attacker which e-mails exist. Guessing across many
    addresses is bounded per account by ACCOUNT_CEILING, which spares addresses the user logged
    in from before. Unknown e-mails are counted exactly like real ones, so the answer reveals nothing.
    """
    email, now = normalise_email(email), now or datetime.now(timezone.utc)
    failures = select(LoginAttempt.at).where(LoginAttempt.email == email, LoginAttempt.success.is_(False))
    recent = [
        _aware(at)
        for at in db.session.scalars(
            failures.where(LoginAttempt.address == address, LoginAttempt.at >= now - WINDOW)
            .order_by(LoginAttempt.at.desc())
            .limit(FREE_FAILURES + 8)
        )
    ]
    wait = timedelta(0)
    if len(recent) >= FREE_FAILURES:
        delay = min(FIRST_DELAY * 2 ** (len(recent) - FREE_FAILURES), WINDOW)
        wait = recent[0] + delay - now
    hour_failures = db.session.scalar(
        select(func.count()).select_from(failures.where(LoginAttempt.at >= now - CEILING_WINDOW).subquery())
    )
    if hour_failures >= ACCOUNT_CEILING and not db.session.scalar(
        select(LoginAttempt.id)
        .where(LoginAttempt.email == email, LoginAttempt.address == address, LoginAttempt.success.is_(True))
        .limit(1)
    ):
        wait = max(wait, FIRST_DELAY * 2)
    return max(0, int(wait.total_seconds() + 0.999))


@lru_cache(maxsize=4)
def _dummy_hash(method: str) -> str:
    """A hash of a random password with the configured method and cost, made once per process."""
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


def _hash_method() -> str:
    return current_app.config.get("PASSWORD_HASH_METHOD", "scrypt") if has_app_context() else "scrypt"


def authenticate(email: str, password: str, address: str) -> User | None:
    """Check a login and record the attempt; None when refused (same answer for every reason).

    An unknown e-mail or an inactive user still costs one password check (against a dummy hash
    of the same method and cost), so the time taken does not tell which e-mails have accounts.
    """
    email = normalise_email(email)
    user = db.session.scalar(select(User).where(User.email == email))
    if user is not None and user.active:
        ok = user.check_password(password)
    else:
        check_password_hash(_dummy_hash(_hash_method()), password)
        ok = False
    db.session.add(LoginAttempt(email=email, address=address, success=ok))
    if ok:
        user.last_login_at = datetime.now(timezone.utc)
        audit.record("login", email, None, email)
    db.session.commit()
    return user if ok else None


def ensure_store(name: str, **fields) -> Store:
    """Return the store with this name, creating it (audited) when missing."""
    store = db.session.scalar(select(Store).where(Store.name == name))
    if store is None:
        store = Store(name=name, **fields)
        db.session.add(store)
        audit.record("store.create", name, fields or None)
        db.session.flush()
    return store


def all_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.email)))


def get_user(user_id: int) -> User | None:
    return db.session.get(User, user_id)
