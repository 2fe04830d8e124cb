"""Composition root: ``create_app()`` wires config, extensions, blueprints, errors and CLI.

WSGI entry: ``gunicorn "app:create_app()"``. The factory has no side effects: it writes nothing,
trains nothing and opens no network connection.
"""

from __future__ import annotations

from collections.abc import Mapping

from dotenv import load_dotenv
from flask import Flask, has_request_context, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

import churn_app
from portal import errors, formatting, login_sessions, logs
from portal.config import Config
from portal.extensions import csrf, db, login_manager, mail, migrate
from portal.security import reject_nul_bytes, remember_client_address, require_login, set_security_headers

NAV = [
    ("dashboard.index", "Dashboard"),
    ("customers.index", "Customers"),
    ("tiers.index", "Tiers"),
    ("bundles.index", "Bundles"),
    ("churn.index", "Churn"),
    ("campaigns.index", "Campaigns"),
    ("flows.index", "Automations"),
    ("imports.index", "Imports"),
    ("registry.index", "Models"),
    ("help.index", "Help"),
]


def create_app(config: Config | Mapping | None = None) -> Flask:
    """Build the Loyalist app from ``config`` (a Config, a mapping, or the environment)."""
    app = Flask(__name__, instance_relative_config=True, template_folder="templates", static_folder="static")
    configure(app, config)
    register_proxy(app)
    register_extensions(app)
    register_blueprints(app)
    register_security(app)
    errors.register(app)
    logs.register(app)
    formatting.register(app, NAV)
    register_commands(app)
    register_jobs()
    return app


def configure(app: Flask, config: Config | Mapping | None) -> None:
    if config is None:
        load_dotenv()
        config = Config()
    app.config.from_mapping(config.as_dict() if isinstance(config, Config) else dict(config))


class HttpsAwareSessionInterface(SecureCookieSessionInterface):
    """Signed-cookie sessions whose cookie is also ``Secure`` whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return super().get_cookie_secure(app) or (has_request_context() and request.is_secure)


def register_proxy(app: Flask) -> None:
    """Trust X-Forwarded-For/-Proto/-Host/-Port/-Prefix from PROXY_FIX proxies (0, the default: none).

    With it, ``request.remote_addr`` (the login throttle's key) is the client's address, and
    ``url_for(_external=True)`` and ``request.is_secure`` follow what the user's browser used. The
    session cookie is marked Secure on HTTPS requests even without SESSION_COOKIE_SECURE.
    """
    app.session_interface = HttpsAwareSessionInterface()
    hops = int(app.config.get("PROXY_FIX") or 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)


def register_extensions(app: Flask) -> None:
    from portal import db_events

    db.init_app(app)
    db_events.register(app)
    migrate.init_app(app, db, directory=str(app.root_path + "/migrations"), render_as_batch=True)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see this page."
    login_manager.session_protection = "strong"
    csrf.init_app(app)
    mail.init_app(app)


def register_blueprints(app: Flask) -> None:
    from portal import health, webhooks
    from portal.admin.views import bp as admin_bp
    from portal.auth.views import bp as auth_bp
    from portal.bundles.views import bp as bundles_bp
    from portal.campaigns.views import bp as campaigns_bp
    from portal.customers.views import bp as customers_bp
    from portal.dashboard.views import bp as dashboard_bp
    from portal.help.views import bp as help_bp
    from portal.imports.views import bp as imports_bp
    from portal.lists.views import bp as lists_bp
    from portal.registry.views import bp as registry_bp
    from portal.tiers.views import bp as tiers_bp

    for bp in (
        auth_bp,
        health.bp,
        dashboard_bp,
        customers_bp,
        tiers_bp,
        bundles_bp,
        churn_app.bp,
        campaigns_bp,
        imports_bp,
        registry_bp,
        admin_bp,
        webhooks.bp,
    ):
        app.register_blueprint(bp)
    app.register_blueprint(lists_bp)
    app.register_blueprint(help_bp)
    from portal.mail.views import bp as mail_bp

    app.register_blueprint(mail_bp)  # /account/mail, /mail/unsubscribe/<token> (no login), /admin/mail
    from portal.flows.views import bp as flows_bp

    app.register_blueprint(flows_bp)  # /flows: automations (portal/services/flows/)
    csrf.exempt(webhooks.bp)  # Twilio signs these instead (X-Twilio-Signature)
    from portal import api
    from portal.account.views import bp as account_bp
    from portal.account.webhooks import bp as webhooks_admin_bp

    app.register_blueprint(account_bp)  # /account/tokens
    app.register_blueprint(webhooks_admin_bp)  # /admin/webhooks (outgoing webhooks)
    api.init_app(app)  # /api/v1: bearer tokens, no session, no CSRF, JSON errors (portal/api/__init__.py)


def register_commands(app: Flask) -> None:
    """Every ``flask`` command, area by area (each area's commands.py calls that area's services)."""
    from portal import cli, jobs_cli
    from portal.campaigns import commands as campaign_commands
    from portal.imports import commands as import_commands
    from portal.lists import commands as list_commands
    from portal.registry import commands as registry_commands

    for module in (cli, import_commands, registry_commands, list_commands, campaign_commands, jobs_cli):
        for command in module.commands:
            app.cli.add_command(command)
    from portal.flows import commands as flow_commands

    for command in flow_commands.commands:
        app.cli.add_command(command)
    from portal.mail import commands as mail_commands

    for command in mail_commands.commands:
        app.cli.add_command(command)


def register_jobs() -> None:
    """Import every module that declares a job (``@jobs.job``), so each entry point (web, ``flask jobs
    run``, ``flask worker``) knows every job name before it runs one. docs/jobs.md lists the names."""
    from portal.services import bundles  # noqa: F401
    from portal.services.campaigns import resuming, sending  # noqa: F401
    from portal.services.dashboard import summary  # noqa: F401
    from portal.services.flows import jobs as flow_jobs  # noqa: F401
    from portal.services.importer import history, runs  # noqa: F401
    from portal.services.mail import alerts, digest  # noqa: F401
    from portal.services.scores import training  # noqa: F401
    from portal.services.summaries import campaigns as campaign_summaries  # noqa: F401
    from portal.services.summaries import customers as customer_summaries  # noqa: F401
    from portal.services.webhooks_out import delivery  # noqa: F401


def register_security(app: Flask) -> None:
    app.before_request(reject_nul_bytes)
    app.before_request(remember_client_address)
    login_sessions.register(app)  # user loader + session checks, before the login gate
    app.before_request(require_login)
    app.after_request(set_security_headers)
