"""Users and logins: creation, password changes and login throttling (all audited)."""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import ROLES, LoginAttempt, Store, User
from portal.services import audit

# Throttling: after this many failures in the window the account (or address) waits until
# the oldest failure leaves the window, so an attacker can slow a user down but never lock
# them out for longer than the window.
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20
WINDOW = timedelta(minutes=15)
MIN_PASSWORD = 10


class AccountError(ValueError):
    """A refused account change; the message is for the user."""


def generate_password() -> str:
    """A random password to show once (about 96 bits)."""
    return secrets.token_urlsafe(12)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"Password must have at least {MIN_PASSWORD} characters.")


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def create_user(email: str, role: str, password: str, store_name: str | None = None,
                actor: str | None = None) -> User:
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
    check_password_strength(password)
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
        others = db.session.scalar(select(func.count()).select_from(User).where(
            User.role == "admin", User.active.is_(True), User.id != user.id))
        if not others:
            raise AccountError("This is the last active admin; make another admin first.")
    user.role, user.store_id, user.active = role, store_id, active
    audit.record("user.update", user.email, {"before": before,
                 "after": {"role": role, "store_id": store_id, "active": active}}, actor)
    db.session.commit()


def reset_password(user: User, actor: str | None) -> str:
    """Give a user a new random password (shown once to the admin), audited."""
    password = generate_password()
    user.set_password(password)
    audit.record("user.password_reset", user.email, None, actor)
    db.session.commit()
    return password


def change_own_password(user: User, current: str, new: str) -> None:
    if not user.check_password(current):
        raise AccountError("Current password is wrong.")
    check_password_strength(new)
    user.set_password(new)
    audit.record("user.password_change", user.email, None, user.email)
    db.session.commit()


def throttled(email: str, address: str) -> bool:
    """True when this account or address has too many recent failures to try again now."""
    since = datetime.now(timezone.utc) - WINDOW
    fails = select(func.count()).select_from(LoginAttempt).where(
        LoginAttempt.success.is_(False), LoginAttempt.at >= since)
    by_account = db.session.scalar(fails.where(LoginAttempt.email == normalise_email(email)))
    by_address = db.session.scalar(fails.where(LoginAttempt.address == address))
    return by_account >= MAX_FAILURES_PER_ACCOUNT or by_address >= MAX_FAILURES_PER_ADDRESS


def authenticate(email: str, password: str, address: str) -> User | None:
    """Check a login and record the attempt; None when refused (same answer for every reason)."""
    email = normalise_email(email)
    user = db.session.scalar(select(User).where(User.email == email))
    ok = bool(user and user.active and user.check_password(password))
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
