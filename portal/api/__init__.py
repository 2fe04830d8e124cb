"""The JSON API under /api/v1 (flask-smorest): bearer tokens only, OpenAPI document from the code.

``init_app`` is called by ``app.register_blueprints``. Every request under /api/v1 passes
``_gate`` first (before the portal's session and login checks): the session cookie is set aside
(never read, never rewritten), the ``Authorization: Bearer`` token is checked (revocation, expiry and
the user's deactivation at once), and the token's user becomes the request's user, so the views call
the same scoped services as the pages. CSRF does not apply (no cookie authenticates here). Errors are
JSON (``common.handle_http_exception``); rate limits are per token (Flask-Limiter, Redis when REDIS_URL).
"""

from __future__ import annotations

import hashlib

from flask import Flask, current_app, g, request
from flask.sessions import SecureCookieSession, SessionInterface
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_smorest import Api

from portal.api.common import error_response
from portal.extensions import csrf, login_manager
from portal.services import api_tokens

PREFIX = "/api/v1"
DOC_ENDPOINTS = {"api-docs.openapi_json", "api_reference.reference"}
DEFAULT_RATE_LIMIT = "600 per minute"
MAX_ID = 2**31 - 1  # the id columns are 32-bit INTEGER on PostgreSQL


class LoyalistApi(Api):
    """flask-smorest's Api without its app-wide error handler: the portal's pages keep their HTML errors,
    and each API blueprint answers its own errors in JSON (``common.make_blueprint``)."""

    def _register_error_handlers(self):
        return None


api = LoyalistApi(
    spec_kwargs={
        "info": {
            "description": (
                "Loyalist's API for tills, shops and CRMs. Authenticate with `Authorization: Bearer <token>` "
                "(create tokens on /account/tokens). A token sees exactly what its user sees. Lists take the "
                "list pages' filters and return keyset pages: pass `next_after` back as `after`."
            )
        },
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearerAuth": []}],
        "servers": [{"url": "/"}],
    }
)


def _is_api(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class NoSessionForApi(SessionInterface):
    """The app's session interface, except under /api/v1: an empty session there, never saved.

    The session cookie is never an API credential: nothing under /api/v1 reads the browser's login,
    and no API response rewrites (or clears) its cookie.
    """

    def __init__(self, inner: SessionInterface):
        self.inner = inner

    def open_session(self, app, request):
        if _is_api(request.path):
            return SecureCookieSession()
        return self.inner.open_session(app, request)

    def save_session(self, app, session, response):
        if _is_api(request.path):
            return None
        return self.inner.save_session(app, session, response)

    def is_null_session(self, obj) -> bool:
        return self.inner.is_null_session(obj)

    def __getattr__(self, name):
        """Everything else (the signing serializer, cookie settings) is the wrapped interface's."""
        return getattr(self.inner, name)


def _rate_key() -> str:
    """Rate limits count per token (a hash of the presented secret), else per client address."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return "token:" + hashlib.sha256(auth[7:].strip().encode()).hexdigest()[:32]
    return "addr:" + (get_remote_address() or "")


_LIMITED: set[str] = set()
limiter = Limiter(key_func=_rate_key, default_limits=[], headers_enabled=True)


def _rate_limit() -> str:
    return current_app.config.get("API_RATE_LIMIT") or DEFAULT_RATE_LIMIT


def init_app(app: Flask) -> None:
    """Mount the API on ``app``: config, the OpenAPI document, the resources, the gate, CSRF and limits."""
    from portal.api import bundles, campaigns, coupons, customers, purchases, reference, registry, segments
    from portal.security import PUBLIC_ENDPOINTS

    app.config.setdefault("API_TITLE", "Loyalist API")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", PREFIX)
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault("API_RATE_LIMIT", DEFAULT_RATE_LIMIT)
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "memory://")
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "loyalist-api")
    # Redis unreachable: serve without counting (and log it) rather than fail every API request.
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    if not isinstance(app.session_interface, NoSessionForApi):
        app.session_interface = NoSessionForApi(app.session_interface)
    app.before_request(_gate)  # registered before the portal's session and login checks, so it runs first
    app.teardown_request(_forget_user)
    api.init_app(app)
    limiter.init_app(app)
    for module in (customers, purchases, segments, campaigns, bundles, registry, coupons):
        if module.blp.name not in _LIMITED:  # the blueprints are module-level: decorate them once
            limiter.limit(_rate_limit)(module.blp)
            _LIMITED.add(module.blp.name)
        api.register_blueprint(module.blp, url_prefix=PREFIX + module.blp.url_prefix)
        csrf.exempt(module.blp)
    app.register_blueprint(reference.bp)
    # The document and its reference page hold no data: readable without a token (a client fetches the
    # document to learn how to authenticate).
    PUBLIC_ENDPOINTS.update(DOC_ENDPOINTS)


def _gate():
    """Before every request under /api/v1: no session, a bearer token, its user as the request's user."""
    if not _is_api(request.path):
        return None
    g._login_user = login_manager.anonymous_user()
    if request.endpoint in DOC_ENDPOINTS:
        return None
    if request.routing_exception is not None:
        code = getattr(request.routing_exception, "code", 404) or 404
        return error_response(code if code in (404, 405) else 404)
    if any(isinstance(v, int) and v > MAX_ID for v in (request.view_args or {}).values()):
        return error_response(404)  # no row has such an id, and the database driver could not even bind it
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return error_response(401, headers={"WWW-Authenticate": 'Bearer realm="loyalist"'})
    found = api_tokens.authenticate(secret.strip())
    if found is None:
        return error_response(
            401,
            "The token is unknown, revoked or expired, or its user is deactivated.",
            headers={"WWW-Authenticate": 'Bearer realm="loyalist", error="invalid_token"'},
        )
    if request.is_json and _bad_text(request.get_json(silent=True)):
        # The databases cannot store NUL characters or lone UTF-16 surrogates: bad input, never a database error.
        return error_response(
            422,
            "Text may not contain NUL characters (\\u0000) or unpaired surrogates (\\ud800-\\udfff).",
            {"json": ["invalid character in text"]},
        )
    g.api_token, g.api_user = found
    g._login_user = g.api_user  # the portal's checks (login gate, no-store header) see the token's user
    return None


def _bad_text(value, depth: int = 0) -> bool:
    """Whether a JSON value holds, in any string (keys included), a NUL or a lone surrogate (not UTF-8)."""
    if depth > 50:
        return False
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_bad_text(k, depth + 1) or _bad_text(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_bad_text(v, depth + 1) for v in value)
    return False


def _forget_user(_exc=None) -> None:
    """After an API request: drop its user from ``g`` (an app context shared by several requests, as in
    tests or a streamed response, must not carry the token's user, or its absence, to the next one)."""
    if _is_api(request.path):
        for name in ("_login_user", "api_user", "api_token"):
            g.pop(name, None)
