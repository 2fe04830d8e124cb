"""``flask`` commands. Each prints its summary on stdout and a one-line reason on stderr.

Exit status: 0 when the work was accepted (even if nothing new was added), 1 when refused,
2 on a usage error (click's own). This module holds the helpers every command shares and the set-up
commands (``init-db``, ``users``); each area's commands live in ``portal/<area>/commands.py``, and
``app.register_commands`` lists them all. No module here imports an area, so nothing imports back.
"""

from __future__ import annotations

import os
import secrets
import sys

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select

from portal.config import SECRET_FILE
from portal.extensions import db


def refuse(reason: str) -> None:
    """Stop a command that was refused: the reason on stderr, exit status 1."""
    click.echo(reason, err=True)
    sys.exit(1)


def ensure_secret_key() -> bool:
    """Write a random SECRET_KEY to instance/ when none is configured; True when one was written."""
    if os.environ.get("SECRET_KEY") or SECRET_FILE.exists():
        return False
    SECRET_FILE.parent.mkdir(parents=True, exist_ok=True)
    SECRET_FILE.write_text(secrets.token_hex(32))
    SECRET_FILE.chmod(0o600)
    return True


def upgrade_schema() -> None:
    """Create or upgrade the schema with the Alembic migrations (idempotent)."""
    from flask_migrate import upgrade

    uri = current_app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri[len("sqlite:///") :]) or ".", exist_ok=True)
    upgrade(directory=os.path.join(current_app.root_path, "migrations"))


def ensure_first_admin() -> str | None:
    """Create the first admin from ADMIN_EMAIL / ADMIN_PASSWORD, or with a generated password.

    Returns a line to print (the generated password is shown once), None when users exist.
    """
    from portal.models import User
    from portal.services import accounts

    if db.session.scalar(select(func.count()).select_from(User)):
        return None
    email = os.environ.get("ADMIN_EMAIL") or "admin@localhost.localdomain"
    password = os.environ.get("ADMIN_PASSWORD")
    generated = not password
    password = password or accounts.generate_password(email)
    accounts.create_user(email, "admin", password, actor="cli")  # ADMIN_PASSWORD meets the same rules
    if generated:
        return f"created admin {email} with password {password} (shown once: change it after logging in)"
    return f"created admin {email} (password from ADMIN_PASSWORD)"


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Create or upgrade the database schema; write a SECRET_KEY and the first admin if missing."""
    if ensure_secret_key():
        click.echo(f"wrote a new random SECRET_KEY to {SECRET_FILE}")
    try:
        upgrade_schema()
    except Exception as exc:  # a database that cannot be reached or migrated
        refuse(f"could not create the schema: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
    from portal.services.accounts import AccountError

    try:
        line = ensure_first_admin()
    except AccountError as exc:
        refuse(f"the first admin was not created (ADMIN_EMAIL / ADMIN_PASSWORD): {exc}")
    click.echo("database schema is up to date")
    if line:
        click.echo(line)


@click.group("users")
def users_group():
    """Manage portal users."""


@users_group.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "manager", "marketer"]), required=True)
@click.option("--store", "store_name", default=None, help="The store a manager belongs to.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def users_create(email, role, store_name, password_stdin):
    """Create a user; the password is prompted for, or read from stdin."""
    from portal.services import accounts

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        accounts.create_user(email, role, password, store_name, actor="cli")
    except accounts.AccountError as exc:
        refuse(str(exc))
    click.echo(f"created {role} {accounts.normalise_email(email)}")


commands = [init_db_command, users_group]
